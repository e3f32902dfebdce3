"""Facilities: create (admin), list and read (commitment, BB, availability, outstanding, LTV)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from api.deps import Admin, CurrentPrincipal, PlatformDep, VisibleFacility
from api.schemas import FacilityCreate
from api.views import summary_view
from ledger.core.reference import Facility, SkuTerms

router = APIRouter(prefix="/facilities", tags=["facilities"])


@router.post("", status_code=201)
async def create_facility(body: FacilityCreate, platform: PlatformDep, _: Admin) -> dict[str, Any]:
    """Open a facility: terms per SKU, approved sites, LTV lines, cost-plus pricing tier."""
    f = Facility(
        facility_id=body.facility_id,
        borrower_id=body.borrower_id,
        currency=body.currency,
        commitment=body.commitment,
        terms={k: SkuTerms(k, v.advance_rate, v.concentration_limit) for k, v in body.terms.items()},
        approved_sites=frozenset(body.approved_sites),
        reserves=body.reserves,
        max_age_days=body.max_age_days,
        liquidation_horizon_days=body.liquidation_horizon_days,
        warning_ltv=body.warning_ltv,
        liquidation_ltv=body.liquidation_ltv,
        max_price_age_s=body.max_price_age_s,
        haircut_floor=body.haircut_floor,
        haircut_cap=body.haircut_cap,
    )
    return summary_view(await platform.credit.open_facility(f, body.tier))


@router.get("")
async def list_facilities(
    platform: PlatformDep,
    principal: CurrentPrincipal,
    after: str | None = Query(None, max_length=64, description="the last facility_id of the page before"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Facilities the caller may see (a borrower: its own), by facility id, keyset-paginated:
    pass `after` = `next_after` for the next page (`next_after` is null on the last one);
    `total` counts them all."""
    visible = [f for f in await platform.credit.facility_ids() if principal.may_see(f)]
    rest = [f for f in visible if after is None or f > after]
    page = rest[:limit]
    return {
        "items": [summary_view(s) for s in await platform.credit.summaries(page)],
        "total": len(visible),
        "next_after": page[-1] if len(rest) > limit else None,
    }


@router.get("/{facility_id}")
async def read_facility(facility_id: VisibleFacility, platform: PlatformDep) -> dict[str, Any]:
    """Commitment, borrowing base, availability, outstanding, accrued interest, LTV, status."""
    return summary_view(await platform.credit.summary(facility_id))
