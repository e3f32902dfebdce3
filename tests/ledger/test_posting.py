"""The money journal: balanced postings, the builders, and balances as a fold over postings."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.core.errors import CurrencyMismatch, InvalidAmount, InvalidInput, Overpayment
from ledger.core.posting import (
    ACCOUNTS,
    Balances,
    Posting,
    PostingLine,
    UnbalancedPosting,
    UnknownAccount,
    WrongFacility,
    allocation_of,
    drawdown_posting,
    fee_posting,
    interest_accrual_posting,
    repayment_postings,
)
from ledger.core.repayment import Allocation, Owed

EUR = "EUR"
FAC = "fac-1"
D = Decimal


def t(day: int, hour: int = 0) -> datetime:
    """Day 1 = 2024-01-01 (UTC); day 32 = 2024-02-01."""
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour)


# Hand-computed daily interest at 7.30 % act/365, i.e. principal x 0.0002 a day:
#   days 1-15  on 100,000.00 -> 20.00
#   days 16-20 on 150,000.00 -> 30.00   (50,000.00 drawn on day 16)
#   days 21-30 on 110,700.00 -> 22.14   (repayment of 40,000.00 on day 21: 450.00 interest
#                                        for days 1-20, then the 250.00 fee, then 39,300.00)
HAND_INTEREST = {
    day: D("20.00") if day <= 15 else D("30.00") if day <= 20 else D("22.14")
    for day in range(1, 31)
}


def thirty_day_story() -> list[Posting]:
    """January 2024: draw, fee, draw again, repay; each day's interest booked at next midnight."""
    postings: list[Posting] = []
    for day in range(1, 32):
        if day > 1:
            amount = HAND_INTEREST[day - 1]
            postings.append(interest_accrual_posting(f"i{day - 1}", FAC, t(day), amount, EUR))
        if day == 1:
            postings.append(drawdown_posting("d1", FAC, t(1, 10), D("100000.00"), EUR))
        if day == 10:
            postings.append(fee_posting("f1", FAC, t(10, 12), D("250.00"), EUR, memo="arrangement"))
        if day == 16:
            postings.append(drawdown_posting("d2", FAC, t(16, 9), D("50000.00"), EUR))
        if day == 21:
            owed = Balances.from_postings(postings).owed
            postings.extend(repayment_postings("r1", FAC, t(21, 12), D("40000.00"), owed, EUR))
    return postings


# --- a posting refuses to be wrong -------------------------------------------------------------


def test_drawdown_debits_principal_and_credits_cash() -> None:
    p = drawdown_posting("d1", FAC, t(1), D("100000.00"), EUR, idempotency_key="k1")
    assert p.kind == "drawdown"
    assert p.lines == (
        PostingLine("principal", debit=D("100000.00")),
        PostingLine("cash", credit=D("100000.00")),
    )
    assert p.amount == D("100000.00")
    assert p.idempotency_key == "k1"


def test_unbalanced_posting_is_refused_with_the_totals() -> None:
    lines = (PostingLine("principal", debit=D("100.00")), PostingLine("cash", credit=D("99.99")))
    with pytest.raises(UnbalancedPosting) as err:
        Posting("p1", FAC, t(1), "drawdown", lines, EUR)
    assert (err.value.debits, err.value.credits) == (D("100.00"), D("99.99"))
    assert err.value.facts["posting_id"] == "p1"


@pytest.mark.parametrize(
    ("debit", "credit"),
    [(D(0), D(0)), (D("-5.00"), D(0)), (D("5.00"), D("5.00"))],
    ids=["zero", "negative", "both-sides"],
)
def test_a_line_carries_exactly_one_positive_amount(debit: Decimal, credit: Decimal) -> None:
    with pytest.raises(InvalidAmount):
        PostingLine("principal", debit=debit, credit=credit)


def test_a_float_amount_is_refused() -> None:
    with pytest.raises(InvalidAmount, match="float"):
        PostingLine("principal", debit=0.1)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="float"):
        drawdown_posting("d1", FAC, t(1), 100.0, EUR)  # type: ignore[arg-type]


def test_a_line_in_another_currency_is_refused() -> None:
    lines = (
        PostingLine("principal", debit=D("10.00"), currency="EUR"),
        PostingLine("cash", credit=D("10.00"), currency="USD"),
    )
    with pytest.raises(CurrencyMismatch) as err:
        Posting("p1", FAC, t(1), "drawdown", lines, EUR)
    assert (err.value.expected, err.value.got) == ("EUR", "USD")


def test_amounts_finer_than_the_minor_unit_are_refused() -> None:
    lines = (PostingLine("principal", debit=D("10.005")), PostingLine("cash", credit=D("10.005")))
    with pytest.raises(InvalidAmount, match="decimals"):
        Posting("p1", FAC, t(1), "drawdown", lines, EUR)
    with pytest.raises(InvalidAmount):  # yen have no minor unit
        drawdown_posting("d1", FAC, t(1), D("100.5"), "JPY")


def test_unknown_account_naive_time_bad_kind_and_empty_lines_are_refused() -> None:
    with pytest.raises(UnknownAccount):
        PostingLine("petty_cash", debit=D(1))
    ok = (PostingLine("principal", debit=D(1)), PostingLine("cash", credit=D(1)))
    with pytest.raises(InvalidInput, match="timezone-aware"):
        Posting("p1", FAC, datetime(2024, 1, 1), "drawdown", ok, EUR)
    with pytest.raises(InvalidInput, match="kind"):
        Posting("p1", FAC, t(1), "gift", ok, EUR)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no lines"):
        Posting("p1", FAC, t(1), "drawdown", (), EUR)
    with pytest.raises(InvalidInput, match="currency"):
        Posting("p1", FAC, t(1), "drawdown", ok, "eur")


# --- builders ----------------------------------------------------------------------------------


def test_a_requested_drawdown_is_not_rounded_but_refused() -> None:
    # The borrower asked for 100.005; paying 100.00 (or 100.01) would not be what was asked.
    with pytest.raises(InvalidAmount):
        drawdown_posting("d1", FAC, t(1), D("100.005"), EUR)


@pytest.mark.parametrize(
    ("raw", "booked"),
    [(D("0.125"), D("0.12")), (D("0.135"), D("0.14")), (D("20.005"), D("20.00"))],
)
def test_interest_is_rounded_half_even_when_booked(raw: Decimal, booked: Decimal) -> None:
    p = interest_accrual_posting("i1", FAC, t(2), raw, EUR)
    assert p.lines == (
        PostingLine("interest_receivable", debit=booked),
        PostingLine("interest_income", credit=booked),
    )


def test_interest_that_rounds_to_zero_is_not_booked() -> None:
    with pytest.raises(InvalidAmount):
        interest_accrual_posting("i1", FAC, t(2), D("0.004"), EUR)


def test_fee_debits_fees_receivable_and_credits_fee_income() -> None:
    p = fee_posting("f1", FAC, t(1), D("250.00"), EUR)
    assert p.effect("fees_receivable") == D("250.00")
    assert p.effect("fee_income") == D("-250.00")


def test_repayment_is_one_posting_settling_interest_then_fees_then_principal() -> None:
    owed = Owed(interest=D("450.00"), fees=D("250.00"), principal=D("150000.00"))
    (p,) = repayment_postings("r1", FAC, t(21, 12), D("40000.00"), owed, EUR, idempotency_key="k")
    assert p.lines == (
        PostingLine("cash", debit=D("40000.00")),
        PostingLine("interest_receivable", credit=D("450.00")),
        PostingLine("fees_receivable", credit=D("250.00")),
        PostingLine("principal", credit=D("39300.00")),
    )
    assert allocation_of(p) == Allocation(D("450.00"), D("250.00"), D("39300.00"))


def test_a_repayment_covering_only_interest_leaves_no_zero_lines() -> None:
    owed = Owed(interest=D("450.00"), fees=D("250.00"), principal=D("150000.00"))
    (p,) = repayment_postings("r1", FAC, t(21), D("100.00"), owed, EUR)
    assert [line.account for line in p.lines] == ["cash", "interest_receivable"]


def test_overpayment_states_the_exact_amount_owed() -> None:
    owed = Owed(interest=D("221.40"), fees=D(0), principal=D("110700.00"))
    with pytest.raises(Overpayment) as err:
        repayment_postings("r2", FAC, t(31), D("110921.41"), owed, EUR)
    assert err.value.owed == D("110921.40")
    assert err.value.offered == D("110921.41")
    assert err.value.facility_id == FAC


def test_allocation_of_a_drawdown_is_refused() -> None:
    with pytest.raises(InvalidInput):
        allocation_of(drawdown_posting("d1", FAC, t(1), D("1.00"), EUR))


# --- balances ----------------------------------------------------------------------------------


def test_thirty_day_story_balances_match_the_hand_computation() -> None:
    b = Balances.from_postings(thirty_day_story())
    assert b.principal == D("110700.00")
    assert b.interest_receivable == D("221.40")  # 10 days x 22.14
    assert b.fees_receivable == D("0.00")
    assert b.total_owed == D("110921.40")
    assert b["cash"] == D("-110000.00")  # 150,000 lent, 40,000 back
    assert b["interest_income"] == D("-671.40")  # 15 x 20 + 5 x 30 + 10 x 22.14
    assert b["fee_income"] == D("-250.00")
    assert sum(b.amounts.values()) == 0


def test_apply_returns_new_balances_and_leaves_the_old_ones_alone() -> None:
    before = Balances()
    after = before.apply(drawdown_posting("d1", FAC, t(1), D("10.00"), EUR))
    assert before.principal == 0 and before.currency is None
    assert after.principal == D("10.00") and (after.currency, after.facility_id) == (EUR, FAC)


def test_balances_refuse_another_currency_or_facility() -> None:
    b = Balances().apply(drawdown_posting("d1", FAC, t(1), D("10.00"), EUR))
    with pytest.raises(CurrencyMismatch):
        b.apply(drawdown_posting("d2", FAC, t(2), D("10.00"), "USD"))
    with pytest.raises(WrongFacility):
        b.apply(drawdown_posting("d3", "fac-2", t(2), D("10.00"), EUR))
    with pytest.raises(UnknownAccount):
        b["petty_cash"]


def test_balances_are_hashable_and_compare_by_value() -> None:
    p = drawdown_posting("d1", FAC, t(1), D("10.00"), EUR)
    assert Balances.from_postings([p]) == Balances().apply(p)
    assert len({Balances.from_postings([p]), Balances().apply(p)}) == 1


# --- properties --------------------------------------------------------------------------------

cents = st.integers(min_value=1, max_value=10**9).map(lambda c: D(c).scaleb(-2))
operations = st.lists(
    st.tuples(st.sampled_from(["draw", "accrue", "fee", "repay"]), cents), max_size=40
)


def book(ops: list[tuple[str, Decimal]]) -> list[Posting]:
    """Turn random operations into postings; a repayment is capped at what is owed."""
    postings: list[Posting] = []
    balances = Balances()
    for n, (op, amount) in enumerate(ops):
        at, pid = t(1) + timedelta(hours=n), f"p{n}"
        if op == "draw":
            new = [drawdown_posting(pid, FAC, at, amount, EUR)]
        elif op == "accrue":
            new = [interest_accrual_posting(pid, FAC, at, amount, EUR)]
        elif op == "fee":
            new = [fee_posting(pid, FAC, at, amount, EUR)]
        elif balances.total_owed > 0:
            paid = min(amount, balances.total_owed)
            new = list(repayment_postings(pid, FAC, at, paid, balances.owed, EUR))
        else:
            new = []
        for posting in new:
            balances = balances.apply(posting)
        postings.extend(new)
    return postings


@given(operations)
def test_every_posting_balances(ops: list[tuple[str, Decimal]]) -> None:
    for posting in book(ops):
        assert posting.total_debits == posting.total_credits > 0


@settings(deadline=None)
@given(operations, st.randoms(use_true_random=False))
def test_balances_rederived_from_postings_equal_the_incremental_ones(
    ops: list[tuple[str, Decimal]], rnd: random.Random
) -> None:
    postings = book(ops)
    incremental = Balances(EUR, FAC)
    for posting in postings:
        incremental = incremental.apply(posting)
        assert sum(incremental.amounts.values()) == 0
    assert Balances.from_postings(postings, currency=EUR, facility_id=FAC) == incremental
    shuffled = postings[:]
    rnd.shuffle(shuffled)
    assert Balances.from_postings(shuffled, currency=EUR, facility_id=FAC) == incremental
    for account in ("principal", "interest_receivable", "fees_receivable"):
        assert incremental[account] >= 0
    assert set(incremental.amounts) == set(ACCOUNTS)


@given(operations, cents)
def test_a_repayment_never_increases_what_is_owed(
    ops: list[tuple[str, Decimal]], offered: Decimal
) -> None:
    before = Balances.from_postings(book(ops))
    assume(before.total_owed > 0)
    paid = min(offered, before.total_owed)
    (p,) = repayment_postings("r", FAC, t(60), paid, before.owed, EUR)
    after = before.apply(p)
    assert after.principal <= before.principal
    assert after.interest_receivable <= before.interest_receivable
    assert after.fees_receivable <= before.fees_receivable
    assert after.total_owed == before.total_owed - paid
