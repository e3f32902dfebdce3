"""Turning ledger values into JSON-ready dicts (the `XPublic` side of the API)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ledger.core.borrowing_base import Certificate
from ledger.core.journal import JournalEntry
from ledger.core.lot import Lot
from ledger.core.money import decimal_text, money_text
from ledger.core.posting import Posting
from ledger.core.statement import Statement
from ledger.credit import FacilitySummary


def s(v: Any) -> Any:
    return None if v is None else str(v)


def m(amount: Decimal | None, currency: str) -> str | None:
    """Money: plain digits, at least the currency's minor unit ("100.00"), lossless."""
    return None if amount is None else money_text(amount, currency)


def d(value: Decimal | None) -> str | None:
    """A rate, ratio or quantity: plain digits, no trailing zeros ("0.02"), lossless."""
    return None if value is None else decimal_text(value)


def summary_view(x: FacilitySummary) -> dict[str, Any]:
    c = x.currency
    return {
        "facility_id": x.facility_id,
        "borrower_id": x.borrower_id,
        "currency": x.currency,
        "status": x.status,
        "commitment": m(x.commitment, c),
        "borrowing_base": m(x.borrowing_base, c),
        "market_value": m(x.market_value, c),
        "principal": m(x.principal, c),
        "accrued_interest": m(x.accrued_interest, c),
        "fees": m(x.fees, c),
        "outstanding": m(x.outstanding, c),
        "availability": m(x.availability, c),
        "ltv": d(x.ltv),
        "line_state": x.state,
        "frozen": x.frozen,
        "over_advance": m(x.over_advance, c),
        "margin_call": None
        if x.margin_call_cash is None
        else {"cash_needed": m(x.margin_call_cash, c), "goods_value_needed": m(x.margin_call_goods_value, c)},
        "rate": {
            "funding_cost": d(x.rate.funding_cost),
            "operating_cost": d(x.rate.operating_cost),
            "risk_premium": d(x.rate.risk_premium),
            "margin": d(x.rate.margin),
            "total": d(x.rate.total),
            "tier": x.rate.tier,
        },
        "as_of": x.as_of.isoformat(),
    }


def posting_view(p: Posting) -> dict[str, Any]:
    return {
        "posting_id": p.posting_id,
        "facility_id": p.facility_id,
        "at": p.at.isoformat(),
        "kind": p.kind,
        "currency": p.currency,
        "amount": m(p.amount, p.currency),
        "memo": p.memo,
        "lines": [
            {"account": ln.account, "debit": m(ln.debit, p.currency), "credit": m(ln.credit, p.currency)}
            for ln in p.lines
        ],
    }


def lot_view(lot: Lot) -> dict[str, Any]:
    return {
        "lot_id": lot.lot_id,
        "facility_id": lot.facility_id,
        "epc": lot.epc,
        "sku_id": lot.sku_id,
        "quantity": d(lot.quantity),
        "site_id": lot.site_id,
        "zone_id": lot.zone_id,
        "status": str(lot.status),
        "pledged": lot.pledged,
        "verified": lot.verified,
        "received_at": lot.received_at.isoformat() if lot.received_at else None,
    }


def entry_view(e: JournalEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at.isoformat(),
        "kind": str(e.kind),
        "evidence": list(e.evidence),
        "reason": e.reason,
        "hash": e.hash,
        "lot": lot_view(e.lot),
    }


def certificate_view(c: Certificate, currency: str) -> dict[str, Any]:
    b = c.base
    return {
        "facility_id": c.facility_id,
        "as_of": c.as_of.isoformat(),
        "currency": currency,
        "borrowing_base": m(b.borrowing_base, currency),
        "gross": m(b.gross, currency),
        "reserves": m(b.reserves, currency),
        "concentration_excess": m(b.concentration_excess, currency),
        "market_value": m(b.market_value, currency),
        "skus": [
            {
                "sku_id": ln.sku_id,
                "eligible_quantity": d(ln.eligible_quantity),
                "market_value": m(ln.market_value, currency),
                "eligible_value": m(ln.eligible_value, currency),
                "haircut": d(ln.haircut),
                "advance_rate": d(ln.advance_rate),
                "lendable": m(ln.lendable, currency),
                "concentration_excess": m(ln.concentration_excess, currency),
                "counted": m(ln.counted, currency),
            }
            for ln in b.lines
        ],
        "ineligible_by_reason": {str(k): d(v) for k, v in c.ineligible_by_reason().items()},
        "lots": [{**lot_view(le.lot), "eligible": le.eligible, "reason": s(le.reason)} for le in c.lots],
    }


def certificate_csv(c: Certificate, currency: str) -> str:
    import csv
    import io

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["lot_id", "epc", "sku_id", "quantity", "site_id", "zone_id", "status", "eligible", "reason"])
    for le in c.lots:
        lot = le.lot
        w.writerow(
            [
                lot.lot_id,
                lot.epc,
                lot.sku_id,
                d(lot.quantity),
                lot.site_id,
                lot.zone_id or "",
                lot.status,
                le.eligible,
                le.reason or "",
            ]
        )
    w.writerow([])
    w.writerow(
        ["sku_id", "eligible_value", "haircut", "advance_rate", "lendable", "concentration_excess", "counted"]
    )
    for ln in c.base.lines:
        w.writerow(
            [
                ln.sku_id,
                m(ln.eligible_value, currency),
                d(ln.haircut),
                d(ln.advance_rate),
                m(ln.lendable, currency),
                m(ln.concentration_excess, currency),
                m(ln.counted, currency),
            ]
        )
    w.writerow([])
    w.writerow(
        [
            "borrowing_base",
            m(c.base.borrowing_base, currency),
            "reserves",
            m(c.base.reserves, currency),
            "as_of",
            c.as_of.isoformat(),
        ]
    )
    return out.getvalue()


def statement_view(st: Statement) -> dict[str, Any]:
    c = st.currency

    def bal(b: Any) -> dict[str, Any]:
        return {
            "principal": m(b.principal, c),
            "interest_receivable": m(b.interest_receivable, c),
            "fees_receivable": m(b.fees_receivable, c),
            "total_owed": m(b.total_owed, c),
        }

    return {
        "facility_id": st.facility_id,
        "currency": st.currency,
        "start": st.start.isoformat(),
        "end": st.end.isoformat(),
        "opening": bal(st.opening),
        "closing": bal(st.closing),
        "drawn": m(st.drawn, c),
        "repaid": m(st.repaid, c),
        "interest_charged": m(st.interest_charged, c),
        "fees_charged": m(st.fees_charged, c),
        "lines": [
            {
                "posting_id": ln.posting_id,
                "at": ln.at.isoformat(),
                "kind": ln.kind,
                "memo": ln.memo,
                "amount": m(ln.amount, c),
                "balances": bal(ln.balances),
            }
            for ln in st.lines
        ],
    }
