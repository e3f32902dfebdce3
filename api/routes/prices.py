"""Prices: record an observation (revalues every facility holding the SKU), read history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path, Query

from api.deps import CurrentPrincipal, PlatformDep, Staff
from api.schemas import PriceCreate, instant
from ledger.core.errors import UnknownSku
from ledger.core.money import decimal_text, money_text
from ledger.core.price import PricePoint
from ledger.core.reference import Sku

router = APIRouter(prefix="/prices", tags=["prices"])


@router.post("", status_code=201)
async def record_price(body: PriceCreate, platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """Record a price; every facility holding the SKU is revalued in the same transaction."""
    at = instant(body.at, "at") if body.at is not None else platform.clock()
    r = await platform.ledger.record_price(
        PricePoint(body.sku_id, at, body.price, body.currency, body.source)
    )
    return {
        "sku_id": r.sku_id,
        "price": money_text(r.price.price, r.price.currency),
        "at": r.price.at.isoformat(),
        "daily_volatility": None if r.sigma is None else decimal_text(r.sigma),
        "facilities_revalued": r.facilities,
    }


@router.get("/{sku_id}")
async def price_history(
    platform: PlatformDep,
    _: CurrentPrincipal,
    sku_id: str = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"),
    until: datetime | None = None,
    limit: int = Query(250, ge=1, le=10_000),
) -> dict[str, Any]:
    """Newest `limit` prices at or before `until`, oldest first."""
    if await platform.ledger.get(Sku, sku_id) is None:
        raise UnknownSku(sku_id)
    if until is not None:
        until = instant(until, "until")
    pts = await platform.ledger.price_history(sku_id, until, limit)
    return {
        "sku_id": sku_id,
        "items": [
            {
                "at": p.at.isoformat(),
                "price": money_text(p.price, p.currency),
                "currency": p.currency,
                "source": p.source,
            }
            for p in pts
        ],
    }
