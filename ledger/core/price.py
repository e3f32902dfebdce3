"""Price observations per SKU (mark-to-market input)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ledger.core.errors import InvalidAmount, InvalidReference
from ledger.core.reference import check_currency, check_id


@dataclass(frozen=True, slots=True)
class PricePoint:
    """Price of one unit of `sku_id` (in the SKU's uom) at time `at`, in `currency`."""

    sku_id: str
    at: datetime
    price: Decimal
    currency: str
    source: str

    def __post_init__(self) -> None:
        check_id("sku", self.sku_id)
        check_currency(self.currency)
        if not isinstance(self.price, Decimal) or not self.price.is_finite() or self.price <= 0:
            raise InvalidAmount("price", self.price, "must be a Decimal greater than zero")
        if self.at.tzinfo is None:
            raise InvalidReference("price time must be timezone-aware")
        if not self.source or len(self.source) > 64:
            raise InvalidReference("price source must be 1-64 characters")


def latest_at(points: Sequence[PricePoint], as_of: datetime) -> PricePoint | None:
    """The last observation at or before `as_of` (points in any order)."""
    best: PricePoint | None = None
    for p in points:
        if p.at <= as_of and (best is None or p.at >= best.at):
            best = p
    return best


def is_stale(point: PricePoint | None, now: datetime, max_age_s: int) -> bool:
    """A price older than `max_age_s` seconds, or no price at all, is stale."""
    return point is None or (now - point.at).total_seconds() > max_age_s
