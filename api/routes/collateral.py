"""Collateral queries: positions, movements, BB certificate (JSON/CSV), audit; lot registration.

"What was pledged, where, worth what, as of when": every read takes an optional `as_of`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from api.deps import PlatformDep, Staff, VisibleFacility
from api.schemas import Format, LotsCreate, instant
from api.views import certificate_csv, certificate_view, entry_view, lot_view
from ledger.core.lot import LotStatus, MovementKind
from ledger.core.money import money_text
from ledger.service import LotRegistration
from ledger.store.port import MovementFilter

router = APIRouter(prefix="/facilities/{facility_id}", tags=["collateral"])

# One Annotated alias, not one shared Query() object: FastAPI binds a shared default to the
# first parameter only, so every filter would have read `?site_id=`.
IdQ = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _aware(when: datetime | None) -> datetime | None:
    return None if when is None else instant(when, "time")


@router.get("/positions")
async def positions(
    facility_id: VisibleFacility,
    platform: PlatformDep,
    as_of: datetime | None = None,
    site_id: IdQ = None,
    zone_id: IdQ = None,
    sku_id: IdQ = None,
    lot_id: IdQ = None,
    status: LotStatus | None = None,
    after: IdQ = None,
    limit: int = Query(100, ge=1, le=10_000),
) -> dict[str, Any]:
    """Lots of the facility by site, zone, SKU, lot and status; `as_of` replays the journal."""
    await platform.ledger.facility(facility_id)
    lots = await platform.ledger.positions(
        facility_id=facility_id,
        site_id=site_id,
        zone_id=zone_id,
        sku_id=sku_id,
        lot_id=lot_id,
        status=str(status) if status else None,
        after=after,
        limit=limit,
        as_of=_aware(as_of),
    )
    items = [lot_view(lot) for lot in lots]
    return {
        "items": items,
        "next_after": items[-1]["lot_id"] if len(items) == limit else None,
        "as_of": as_of.isoformat() if as_of else None,
    }


@router.get("/movements")
async def movements(
    facility_id: VisibleFacility,
    platform: PlatformDep,
    kind: MovementKind | None = None,
    lot_id: IdQ = None,
    site_id: IdQ = None,
    zone_id: IdQ = None,
    sku_id: IdQ = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int | None = Query(None, ge=0, le=2**63 - 1),
    limit: int = Query(100, ge=1, le=10_000),
) -> dict[str, Any]:
    """Journal entries with filters, keyset-paginated by sequence (`after` = last seq seen)."""
    entries = await platform.ledger.movements(
        MovementFilter(
            facility_id,
            lot_id,
            str(kind) if kind else None,
            site_id,
            zone_id,
            sku_id,
            _aware(since),
            _aware(until),
            after,
            limit,
        )
    )
    items = [entry_view(e) for e in entries]
    return {"items": items, "next_after": items[-1]["seq"] if len(items) == limit else None}


@router.get("/certificate", response_model=None)
async def certificate(
    facility_id: VisibleFacility,
    platform: PlatformDep,
    as_of: datetime | None = None,
    format: Format = "json",
) -> Response | dict[str, Any]:
    """Borrowing base certificate with the eligible/ineligible breakdown by reason, as of any time."""
    f = await platform.ledger.facility(facility_id)
    cert = await platform.ledger.certificate(facility_id, _aware(as_of))
    if format == "csv":
        return PlainTextResponse(
            certificate_csv(cert, f.currency),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="bbc-{facility_id}.csv"'},
        )
    return certificate_view(cert, f.currency)


@router.get("/audit")
async def audit(facility_id: VisibleFacility, platform: PlatformDep) -> dict[str, Any]:
    """Verify the journal's hash chain and re-derive money balances from postings."""
    currency = (await platform.ledger.facility(facility_id)).currency
    broken = await platform.ledger.verify(facility_id)
    ok, stored, derived = await platform.credit.check_balances(facility_id)
    return {
        "journal": {
            "ok": broken is None,
            "first_broken_seq": broken.seq if broken else None,
            "reason": broken.reason if broken else None,
        },
        "balances": {
            "ok": ok,
            "stored": {k: money_text(v, currency) for k, v in stored.items()},
            "derived": {k: money_text(v, currency) for k, v in derived.items()},
        },
    }


@router.post("/lots", status_code=201)
async def register_lots(
    facility_id: VisibleFacility, body: LotsCreate, platform: PlatformDep, _: Staff
) -> dict[str, Any]:
    """Announce lots expected at the warehouse (optionally pledged); the gate receives them."""
    res = await platform.ledger.register_lots(
        [
            LotRegistration(
                lot.lot_id,
                facility_id,
                lot.epc.upper(),
                lot.sku_id,
                lot.quantity,
                lot.site_id,
                lot.zone_id,
                pledge=lot.pledge,
            )
            for lot in body.lots
        ]
    )
    return {"registered": len(res.entries), "lots": [lot_view(e.lot) for e in res.entries]}
