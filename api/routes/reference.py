"""Reference data: sites, zones, SKUs, borrowers (collateral managers and admins)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from api.deps import CurrentPrincipal, PlatformDep, Staff
from api.schemas import BorrowerCreate, SiteCreate, SkuCreate, ZoneCreate, jsonable
from ledger.core.reference import Borrower, Site, Sku, Zone

router = APIRouter(tags=["reference"])


@router.post("/sites", status_code=201)
async def create_site(body: SiteCreate, platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """Add a warehouse site (idempotent for identical data)."""
    obj = Site(body.site_id, body.name)
    await platform.ledger.add(obj)
    return asdict(obj)


@router.post("/zones", status_code=201)
async def create_zone(body: ZoneCreate, platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """Add a zone of a site."""
    obj = Zone(body.zone_id, body.site_id, body.name)
    await platform.ledger.add(obj)
    return asdict(obj)


@router.post("/skus", status_code=201)
async def create_sku(body: SkuCreate, platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """Add a SKU: unit of measure, nominal unit mass (kg) and tolerance, price currency."""
    obj = Sku(body.sku_id, body.name, body.uom, body.unit_mass_kg, body.mass_tolerance, body.currency)
    await platform.ledger.add(obj)
    return dict(jsonable(asdict(obj)))


@router.post("/borrowers", status_code=201)
async def create_borrower(body: BorrowerCreate, platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """Add a borrower with its risk tier."""
    obj = Borrower(body.borrower_id, body.name, body.tier)
    await platform.ledger.add(obj)
    return asdict(obj)


@router.get("/skus")
async def list_skus(platform: PlatformDep, _: CurrentPrincipal) -> dict[str, Any]:
    """Every SKU."""
    return {"items": [jsonable(asdict(x)) for x in await platform.ledger.list_all(Sku)]}


@router.get("/sites")
async def list_sites(platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """Every site and its zones."""
    zones = await platform.ledger.list_all(Zone)
    return {
        "items": [
            {**asdict(s), "zones": [asdict(z) for z in zones if z.site_id == s.site_id]}
            for s in await platform.ledger.list_all(Site)
        ]
    }
