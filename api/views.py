"""Turning ledger values into JSON-ready dicts (the `XPublic` side of the API)."""

from __future__ import annotations

from typing import Any

from ledger.core.borrowing_base import Certificate
from ledger.core.journal import JournalEntry
from ledger.core.lot import Lot
from ledger.core.posting import Posting
from ledger.core.statement import Statement
from ledger.credit import FacilitySummary


def s(v: Any) -> Any:
    return None if v is None else str(v)


def summary_view(x: FacilitySummary) -> dict[str, Any]:
    return {
        "facility_id": x.facility_id,
        "borrower_id": x.borrower_id,
        "currency": x.currency,
        "status": x.status,
        "commitment": s(x.commitment),
        "borrowing_base": s(x.borrowing_base),
        "market_value": s(x.market_value),
        "principal": s(x.principal),
        "accrued_interest": s(x.accrued_interest),
        "fees": s(x.fees),
        "outstanding": s(x.outstanding),
        "availability": s(x.availability),
        "ltv": s(x.ltv),
        "line_state": x.state,
        "frozen": x.frozen,
        "over_advance": s(x.over_advance),
        "margin_call": None
        if x.margin_call_cash is None
        else {"cash_needed": s(x.margin_call_cash), "goods_value_needed": s(x.margin_call_goods_value)},
        "rate": {
            "funding_cost": s(x.rate.funding_cost),
            "operating_cost": s(x.rate.operating_cost),
            "risk_premium": s(x.rate.risk_premium),
            "margin": s(x.rate.margin),
            "total": s(x.rate.total),
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
        "amount": s(p.amount),
        "memo": p.memo,
        "lines": [{"account": ln.account, "debit": s(ln.debit), "credit": s(ln.credit)} for ln in p.lines],
    }


def lot_view(lot: Lot) -> dict[str, Any]:
    return {
        "lot_id": lot.lot_id,
        "facility_id": lot.facility_id,
        "epc": lot.epc,
        "sku_id": lot.sku_id,
        "quantity": s(lot.quantity),
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
        "borrowing_base": s(b.borrowing_base),
        "gross": s(b.gross),
        "reserves": s(b.reserves),
        "concentration_excess": s(b.concentration_excess),
        "market_value": s(b.market_value),
        "skus": [
            {
                "sku_id": ln.sku_id,
                "eligible_quantity": s(ln.eligible_quantity),
                "market_value": s(ln.market_value),
                "eligible_value": s(ln.eligible_value),
                "haircut": s(ln.haircut),
                "advance_rate": s(ln.advance_rate),
                "lendable": s(ln.lendable),
                "concentration_excess": s(ln.concentration_excess),
                "counted": s(ln.counted),
            }
            for ln in b.lines
        ],
        "ineligible_by_reason": {str(k): s(v) for k, v in c.ineligible_by_reason().items()},
        "lots": [{**lot_view(le.lot), "eligible": le.eligible, "reason": s(le.reason)} for le in c.lots],
    }


def certificate_csv(c: Certificate) -> str:
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
                lot.quantity,
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
                ln.eligible_value,
                ln.haircut,
                ln.advance_rate,
                ln.lendable,
                ln.concentration_excess,
                ln.counted,
            ]
        )
    w.writerow([])
    w.writerow(
        ["borrowing_base", c.base.borrowing_base, "reserves", c.base.reserves, "as_of", c.as_of.isoformat()]
    )
    return out.getvalue()


def statement_view(st: Statement) -> dict[str, Any]:
    def bal(b: Any) -> dict[str, Any]:
        return {
            "principal": s(b.principal),
            "interest_receivable": s(b.interest_receivable),
            "fees_receivable": s(b.fees_receivable),
            "total_owed": s(b.total_owed),
        }

    return {
        "facility_id": st.facility_id,
        "currency": st.currency,
        "start": st.start.isoformat(),
        "end": st.end.isoformat(),
        "opening": bal(st.opening),
        "closing": bal(st.closing),
        "drawn": s(st.drawn),
        "repaid": s(st.repaid),
        "interest_charged": s(st.interest_charged),
        "fees_charged": s(st.fees_charged),
        "lines": [
            {
                "posting_id": ln.posting_id,
                "at": ln.at.isoformat(),
                "kind": ln.kind,
                "memo": ln.memo,
                "amount": s(ln.amount),
                "balances": bal(ln.balances),
            }
            for ln in st.lines
        ],
    }
