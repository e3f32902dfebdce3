"""Interest and statements over HTTP, against schedules worked out by hand.

F1 is priced cost-plus for tier B: 3.00 % funding + 1.00 % operating + 2.00 % risk + 1.30 % margin
= 7.30 % a year, act/365, so one day costs principal x 0.073 / 365 = principal x 0.0002, rounded
half-even to the cent, day by day. Each whole day is booked, stamped at its last instant
(23:59:59.999999 UTC), by the next money call or the daily job; until then a read shows it as
pending. Repayments settle interest first.
The clock starts on Monday 2026-01-05 09:00 UTC.
"""

from __future__ import annotations

from decimal import Decimal

D = Decimal
RATE_PARTS = ("funding_cost", "operating_cost", "risk_premium", "margin")


async def money(api, kind: str, amount: str, key: str) -> dict:
    r = await api.client.post(
        f"/v1/facilities/F1/{kind}",
        json={"amount": amount},
        headers={**api.auth("borrower"), "Idempotency-Key": key},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def facility(api) -> dict:
    return (await api.client.get("/v1/facilities/F1", headers=api.auth("borrower"))).json()


async def statement(api, start: str, end: str) -> dict:
    r = await api.client.get(
        "/v1/facilities/F1/statement", params={"start": start, "end": end}, headers=api.auth("borrower")
    )
    assert r.status_code == 200, r.text
    return r.json()


def rows(st: dict) -> list[tuple[str, str, str, Decimal, Decimal, Decimal]]:
    """(at, kind, amount, principal, interest, total owed) of each line; balances as numbers."""
    return [
        (
            ln["at"],
            ln["kind"],
            ln["amount"],
            D(ln["balances"]["principal"]),
            D(ln["balances"]["interest_receivable"]),
            D(ln["balances"]["total_owed"]),
        )
        for ln in st["lines"]
    ]


def balances(principal: str, interest: str, total: str) -> dict:
    return {
        "principal": principal,
        "interest_receivable": interest,
        "fees_receivable": "0",
        "total_owed": total,
    }


def same_money(a: dict, b: dict) -> bool:
    return all(D(a[k]) == D(b[k]) for k in a)


async def test_ten_days_at_7_30_percent_on_100000_is_200_00(api, clock):
    rate = (await facility(api))["rate"]
    assert [rate[k] for k in RATE_PARTS] == ["0.03", "0.01", "0.02", "0.013"]
    assert D(rate["total"]) == sum(D(rate[k]) for k in RATE_PARTS) == D("0.073")

    await money(api, "drawdowns", "100000.00", "d1")  # Mon 5 Jan 09:00
    clock.advance(days=10)  # Thu 15 Jan 09:00: days 5..14 Jan accrued, 10 x 20.00
    pending = await facility(api)
    assert (pending["principal"], pending["accrued_interest"]) == ("100000.00", "200.00")
    assert D(pending["outstanding"]) == D("100200.00")
    paid = await money(api, "repayments", "1000.00", "r1")  # 200.00 interest first, 800.00 principal
    assert [ln for ln in paid["posting"]["lines"] if ln["account"] != "cash"] == [
        {"account": "interest_receivable", "debit": "0.00", "credit": "200.00"},
        {"account": "principal", "debit": "0.00", "credit": "800.00"},
    ]
    assert (paid["facility"]["principal"], D(paid["facility"]["accrued_interest"])) == ("99200.00", 0)

    st = await statement(api, "2026-01-05T00:00:00Z", "2026-01-16T00:00:00Z")
    principal = D("100000.00")
    want = [("2026-01-05T09:00:00+00:00", "drawdown", "100000.00", principal, D(0), principal)]
    for day in range(1, 11):  # each day's interest is stamped at its last instant
        interest = D("20.00") * day
        at = f"2026-01-{4 + day:02d}T23:59:59.999999+00:00"
        want.append((at, "interest_accrual", "20.00", principal, interest, principal + interest))
    want.append(("2026-01-15T09:00:00+00:00", "repayment", "1000.00", D("99200.00"), D(0), D("99200.00")))
    assert rows(st) == want
    assert (st["drawn"], st["repaid"], st["interest_charged"]) == ("100000.00", "1000.00", "200.00")
    assert same_money(st["opening"], balances("0", "0", "0"))
    assert same_money(st["closing"], balances("99200.00", "0", "99200.00"))

    # Five more days on 99,200.00: 99,200.00 x 0.0002 = 19.84 a day, 99.20 pending.
    clock.advance(days=5)  # Tue 20 Jan 09:00
    pending = await facility(api)
    assert (pending["accrued_interest"], D(pending["outstanding"])) == ("99.20", D("99299.20"))
    done = await money(api, "repayments", "99299.20", "r2")  # pays everything off
    assert D(done["facility"]["outstanding"]) == 0 and D(done["facility"]["principal"]) == 0

    # A statement that starts mid-way opens with the balances at its start.
    st = await statement(api, "2026-01-15T12:00:00Z", "2026-02-01T00:00:00Z")
    assert same_money(st["opening"], balances("99200.00", "0", "99200.00"))
    assert [(ln["kind"], ln["amount"]) for ln in st["lines"]] == [("interest_accrual", "19.84")] * 5 + [
        ("repayment", "99299.20")
    ]
    assert [D(ln["balances"]["total_owed"]) for ln in st["lines"]] == [
        D("99219.84"),
        D("99239.68"),
        D("99259.52"),
        D("99279.36"),
        D("99299.20"),
        D(0),
    ]
    assert (st["drawn"], st["interest_charged"], st["repaid"]) == ("0.00", "99.20", "99299.20")
    opening, closing = D(st["opening"]["total_owed"]), D(st["closing"]["total_owed"])
    assert closing == opening + D(st["drawn"]) + D(st["interest_charged"]) - D(st["repaid"]) == 0

    clock.advance(days=3)  # nothing owed: nothing accrues
    assert D((await facility(api))["accrued_interest"]) == 0


async def test_each_day_is_rounded_half_even_to_the_cent(api, clock):
    # 12,325.00 x 0.073 / 365 = 2.465 exactly: half-even gives 2.46 (half-up would give 2.47).
    await money(api, "drawdowns", "12325.00", "d1")
    clock.advance(days=1)
    assert (await facility(api))["accrued_interest"] == "2.46"
    await money(api, "repayments", "2.46", "r1")  # settles the day's interest, principal untouched
    # 12,345.67 x 0.073 / 365 = 2.469134...: 2.47.
    await money(api, "drawdowns", "20.67", "d2")
    clock.advance(days=1)
    assert (await facility(api))["accrued_interest"] == "2.47"
    await money(api, "repayments", "2.47", "r2")

    st = await statement(api, "2026-01-05T00:00:00Z", "2026-01-08T00:00:00Z")
    assert [(ln["at"][:16], ln["kind"], ln["amount"]) for ln in st["lines"]] == [
        ("2026-01-05T09:00", "drawdown", "12325.00"),
        ("2026-01-05T23:59", "interest_accrual", "2.46"),
        ("2026-01-06T09:00", "repayment", "2.46"),
        ("2026-01-06T09:00", "drawdown", "20.67"),
        ("2026-01-06T23:59", "interest_accrual", "2.47"),
        ("2026-01-07T09:00", "repayment", "2.47"),
    ]
    assert st["interest_charged"] == "4.93" and D(st["repaid"]) == D("4.93")
    assert same_money(st["closing"], balances("12345.67", "0", "12345.67"))
