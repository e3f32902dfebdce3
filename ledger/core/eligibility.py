"""Eligibility as data: every lot that does not count toward the borrowing base says why.

Reasons are checked in a fixed order, so a lot carries exactly one (the first that applies).
Concentration excess is not a lot-level reason: it is an amount per SKU (borrowing_base.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ledger.core.lot import Lot, LotStatus
from ledger.core.price import PricePoint, is_stale
from ledger.core.reference import Facility


class Reason(StrEnum):
    NOT_IN_WAREHOUSE = "not_in_warehouse"  # expected, missing, released or removed
    NOT_PLEDGED = "not_pledged"
    RELEASE_AUTHORISED = "release_authorised"
    QUARANTINED = "quarantined"
    NOT_FINANCED_SKU = "not_financed_sku"  # the facility has no advance rate for the SKU
    OUTSIDE_APPROVED_SITE = "outside_approved_site"
    UNVERIFIED = "unverified"  # no sensor evidence it is there
    AGED = "aged"
    STALE_PRICE = "stale_price"
    CONCENTRATION_EXCESS = "concentration_excess"  # amount-level, see borrowing_base


_STATUS_REASON = {
    LotStatus.EXPECTED: Reason.NOT_IN_WAREHOUSE,
    LotStatus.MISSING: Reason.NOT_IN_WAREHOUSE,
    LotStatus.RELEASED: Reason.NOT_IN_WAREHOUSE,
    LotStatus.REMOVED: Reason.NOT_IN_WAREHOUSE,
    LotStatus.RELEASE_AUTHORISED: Reason.RELEASE_AUTHORISED,
    LotStatus.QUARANTINED: Reason.QUARANTINED,
}


def static_reason(lot: Lot, facility: Facility) -> Reason | None:
    """The reasons that change only when the lot or the facility changes (not with time)."""
    if lot.status in _STATUS_REASON:
        return _STATUS_REASON[lot.status]
    if not lot.pledged:
        return Reason.NOT_PLEDGED
    if lot.sku_id not in facility.terms:
        return Reason.NOT_FINANCED_SKU
    if lot.site_id not in facility.approved_sites:
        return Reason.OUTSIDE_APPROVED_SITE
    if not lot.verified:
        return Reason.UNVERIFIED
    return None


def is_aged(lot: Lot, facility: Facility, now: datetime) -> bool:
    """Goods held longer than the facility's maximum age (days since receipt) are aged."""
    return lot.received_at is not None and now - lot.received_at > timedelta(days=facility.max_age_days)


def ineligibility(lot: Lot, facility: Facility, price: PricePoint | None, now: datetime) -> Reason | None:
    """The reason `lot` is ineligible at `now`, or None if it counts toward the BB."""
    reason = static_reason(lot, facility)
    if reason is not None:
        return reason
    if is_aged(lot, facility, now):
        return Reason.AGED
    if is_stale(price, now, facility.max_price_age_s):
        return Reason.STALE_PRICE
    return None


@dataclass(frozen=True, slots=True)
class LotEligibility:
    lot: Lot
    reason: Reason | None

    @property
    def eligible(self) -> bool:
        return self.reason is None
