"""Amounts in answers are written one way on both stores: plain digits (asyncpg hands numeric
1000000 back as Decimal('1.00E+6')), at least the currency's minor unit, nothing rounded away."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

MONEY = re.compile(r"^-?\d+\.\d{2,}$")  # EUR: at least cents
PLAIN = re.compile(r"^-?\d+(\.\d*[1-9])?$")  # a rate or quantity: no exponent, no trailing zero

SUMMARY_MONEY = (
    "commitment",
    "borrowing_base",
    "market_value",
    "principal",
    "accrued_interest",
    "fees",
    "outstanding",
    "availability",
    "over_advance",
)


def _money(doc: dict[str, Any], *fields: str) -> None:
    for f in fields:
        assert MONEY.match(doc[f]), (f, doc[f])


async def test_every_amount_of_a_facility_posting_and_statement_has_cents(api):
    h = {**api.auth("borrower"), "Idempotency-Key": "fmt-1"}
    r = await api.client.post("/v1/facilities/F1/drawdowns", json={"amount": "100"}, headers=h)
    assert r.status_code == 201
    posting, facility = r.json()["posting"], r.json()["facility"]
    assert posting["amount"] == "100.00"
    for line in posting["lines"]:
        _money(line, "debit", "credit")
    _money(facility, *SUMMARY_MONEY)
    assert facility["commitment"] == "1000000.00"
    assert facility["principal"] == "100.00"
    assert PLAIN.match(facility["ltv"]), facility["ltv"]
    for part in ("funding_cost", "operating_cost", "risk_premium", "margin", "total"):
        assert PLAIN.match(facility["rate"][part]), facility["rate"]

    read = (await api.client.get("/v1/facilities/F1", headers=api.auth("borrower"))).json()
    _money(read, *SUMMARY_MONEY)
    # the same values as the computation's, only written with cents
    assert Decimal(read["borrowing_base"]) == (await api.platform.credit.summary("F1")).borrowing_base

    st = await api.client.get(
        "/v1/facilities/F1/statement",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
        headers=api.auth("borrower"),
    )
    doc = st.json()
    _money(doc, "drawn", "repaid", "interest_charged", "fees_charged")
    for b in (doc["opening"], doc["closing"], *(ln["balances"] for ln in doc["lines"])):
        _money(b, "principal", "interest_receivable", "fees_receivable", "total_owed")
    assert [ln["amount"] for ln in doc["lines"]] == ["100.00"]


async def test_a_certificate_writes_amounts_with_cents_and_rates_plain(api):
    cm = api.auth("collateral_manager")
    cert = (await api.client.get("/v1/facilities/F1/certificate", headers=cm)).json()
    _money(cert, "borrowing_base", "gross", "reserves", "concentration_excess", "market_value")
    for line in cert["skus"]:
        _money(line, "market_value", "eligible_value", "lendable", "concentration_excess", "counted")
        for f in ("eligible_quantity", "haircut", "advance_rate"):
            assert PLAIN.match(line[f]), (f, line[f])
    text = (await api.client.get("/v1/facilities/F1/certificate?format=csv", headers=cm)).text
    rows = list(csv.reader(io.StringIO(text)))
    columns = ["sku_id", "eligible_value", "haircut", "advance_rate", "lendable"]
    columns += ["concentration_excess", "counted"]
    header = rows.index(columns)
    for row in rows[header + 1 :]:
        if not row:
            break
        for cell in (row[1], row[4], row[5], row[6]):
            assert MONEY.match(cell), row
    assert MONEY.match(rows[-1][1]) and MONEY.match(rows[-1][3]), rows[-1]


async def test_refusals_write_amounts_without_exponents(api):
    h = {**api.auth("borrower"), "Idempotency-Key": "fmt-2"}
    r = await api.client.post("/v1/facilities/F1/repayments", json={"amount": "5"}, headers=h)
    assert r.status_code == 422
    assert r.json()["owed"] == "0.00"
    assert r.json()["detail"] == "repayment of 5.00 exceeds the 0.00 owed on facility F1"
    r = await api.client.post(
        "/v1/facilities/F1/drawdowns", json={"amount": "999999999"}, headers={**h, "Idempotency-Key": "fmt-3"}
    )
    assert r.status_code == 409, r.json()
    body = r.json()
    assert body["requested"] == "999999999.00" and MONEY.match(body["available"]), body
    assert "E" not in body["detail"], body


async def test_a_refused_amount_is_quoted_as_sent(api):
    r = await api.client.post(
        "/v1/facilities/F1/drawdowns",
        json={"amount": "100.005"},
        headers={**api.auth("borrower"), "Idempotency-Key": "fmt-4"},
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "drawdown amount has more than 2 decimals for EUR (got 100.005)"
