"""Request and response bodies (pydantic). Money and quantities travel as decimal strings:
a JSON float cannot carry 0.10 exactly, so amounts like 0.1 as numbers are refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ledger.core.errors import InvalidReference

DECIMAL_RE = r"^-?\d{1,18}(\.\d{1,18})?$"


def instant(when: datetime, name: str) -> datetime:
    """A timezone-aware time that exists in UTC (years 1..9999 after conversion), else 422."""
    if when.tzinfo is None:
        raise InvalidReference(f"{name} needs a timezone (e.g. 2026-01-05T09:00:00Z)")
    try:
        return when.astimezone(UTC)
    except (OverflowError, ValueError) as e:
        raise InvalidReference(f"{name} is out of range once converted to UTC") from e


def _decimal_text(v: Any) -> Any:
    if isinstance(v, Decimal):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**18:
        raise ValueError("must be below 10^18")
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ValueError(
            'must be a decimal string such as "1000.00" (JSON numbers with a fraction are refused)'
        )
    if isinstance(v, str) and not re.match(DECIMAL_RE, v):
        raise ValueError('must be a plain decimal string such as "1000.00"')
    return v


DecStr = Annotated[Decimal, BeforeValidator(_decimal_text), Field(examples=["1000.00"])]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MoneyCreate(Strict):
    amount: DecStr


class ReleaseCreate(Strict):
    lot_ids: list[Ident] | None = Field(None, max_length=10_000)
    sku_id: Ident | None = None
    quantity: DecStr | None = None

    @model_validator(mode="after")
    def _one_way(self) -> ReleaseCreate:
        if bool(self.lot_ids) == (self.sku_id is not None or self.quantity is not None):
            raise ValueError("give either lot_ids, or sku_id and quantity")
        if self.sku_id is not None and self.quantity is None:
            raise ValueError("sku_id needs a quantity")
        return self


class SkuTermsIn(Strict):
    advance_rate: DecStr
    concentration_limit: DecStr = Decimal(1)


class FacilityCreate(Strict):
    facility_id: Ident
    borrower_id: Ident
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    commitment: DecStr
    terms: dict[Ident, SkuTermsIn] = Field(min_length=1)
    approved_sites: list[Ident] = Field(min_length=1)
    reserves: DecStr = Decimal(0)
    max_age_days: int = Field(365, gt=0, le=36500)
    liquidation_horizon_days: int = Field(20, gt=0, le=3650)
    warning_ltv: DecStr = Decimal("0.70")
    liquidation_ltv: DecStr = Decimal("0.85")
    max_price_age_s: int = Field(3 * 86400, gt=0)
    haircut_floor: DecStr = Decimal("0.02")
    haircut_cap: DecStr = Decimal("0.60")
    tier: str = Field("B", min_length=1, max_length=16)


class PriceCreate(Strict):
    sku_id: Ident
    price: DecStr
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    at: datetime | None = None
    source: str = Field("api", min_length=1, max_length=64)


class SiteCreate(Strict):
    site_id: Ident
    name: str = Field(min_length=1, max_length=200)


class ZoneCreate(Strict):
    zone_id: Ident
    site_id: Ident
    name: str = Field(min_length=1, max_length=200)


class SkuCreate(Strict):
    sku_id: Ident
    name: str = Field(min_length=1, max_length=200)
    uom: str = Field(min_length=1, max_length=16)
    unit_mass_kg: DecStr
    mass_tolerance: DecStr = Decimal("0.02")
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class BorrowerCreate(Strict):
    borrower_id: Ident
    name: str = Field(min_length=1, max_length=200)
    tier: str = Field("B", min_length=1, max_length=16)


class LotCreate(Strict):
    lot_id: Ident
    epc: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9:._-]+$")
    sku_id: Ident
    quantity: DecStr
    site_id: Ident
    zone_id: Ident | None = None
    pledge: bool = True


class LotsCreate(Strict):
    lots: list[LotCreate] = Field(min_length=1, max_length=10_000)


def dec(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def jsonable(obj: Any) -> Any:
    """Decimals as strings, datetimes as ISO 8601, recursively."""
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


Format = Literal["json", "csv"]
