"""Borrowing base, availability and LTV (pure).

    lendable(sku)   = eligible qty x price x (1 - haircut) x advance rate
    cap(sku)        = concentration limit(sku) x sum of lendable over all SKUs
    counted(sku)    = min(lendable(sku), cap(sku))     (the rest is concentration excess)
    BB              = max(0, sum counted - reserves)
    availability    = max(0, min(commitment, BB) - outstanding)
    LTV             = outstanding / market value of pledged goods in the warehouse

The cap is taken against the total before concentration, so adding an eligible lot never lowers
the BB, and the BB never exceeds sum(market value x advance rate). Money in the facility's
currency, unrounded (rounding happens where money is booked).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ledger.core.eligibility import LotEligibility, Reason, ineligibility
from ledger.core.lot import Lot
from ledger.core.price import PricePoint
from ledger.core.reference import Facility

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SkuExposure:
    """One SKU's aggregates in one facility: quantities in the SKU's uom, price per unit."""

    sku_id: str
    pledged_quantity: Decimal  # pledged and in the warehouse (market value basis)
    eligible_quantity: Decimal
    price: Decimal | None
    haircut: Decimal
    advance_rate: Decimal
    concentration_limit: Decimal


@dataclass(frozen=True, slots=True)
class SkuLine:
    sku_id: str
    eligible_quantity: Decimal
    market_value: Decimal  # of pledged goods of this SKU
    eligible_value: Decimal  # eligible qty x price
    haircut: Decimal
    advance_rate: Decimal
    lendable: Decimal  # before concentration
    concentration_excess: Decimal
    counted: Decimal


@dataclass(frozen=True, slots=True)
class BorrowingBase:
    lines: tuple[SkuLine, ...]
    gross: Decimal  # sum of counted
    concentration_excess: Decimal
    reserves: Decimal
    borrowing_base: Decimal
    market_value: Decimal  # pledged goods in the warehouse


def borrowing_base(exposures: Iterable[SkuExposure], reserves: Decimal) -> BorrowingBase:
    """Compute the BB from per-SKU aggregates (see module docstring)."""
    raw = []
    for x in sorted(exposures, key=lambda e: e.sku_id):
        price = x.price or ZERO
        eligible_value = x.eligible_quantity * price
        lendable = eligible_value * (1 - x.haircut) * x.advance_rate
        raw.append((x, price, eligible_value, lendable))
    total = sum((r[3] for r in raw), ZERO)
    lines = []
    for x, price, eligible_value, lendable in raw:
        counted = min(lendable, x.concentration_limit * total)
        lines.append(
            SkuLine(
                x.sku_id,
                x.eligible_quantity,
                x.pledged_quantity * price,
                eligible_value,
                x.haircut,
                x.advance_rate,
                lendable,
                lendable - counted,
                counted,
            )
        )
    gross = sum((line.counted for line in lines), ZERO)
    return BorrowingBase(
        lines=tuple(lines),
        gross=gross,
        concentration_excess=sum((line.concentration_excess for line in lines), ZERO),
        reserves=reserves,
        borrowing_base=max(ZERO, gross - reserves),
        market_value=sum((line.market_value for line in lines), ZERO),
    )


def availability(commitment: Decimal, bb: Decimal, outstanding: Decimal) -> Decimal:
    """max(0, min(commitment, BB) - outstanding)."""
    return max(ZERO, min(commitment, bb) - outstanding)


def ltv(outstanding: Decimal, market_value: Decimal) -> Decimal | None:
    """outstanding / market value; None when both are zero (nothing lent, nothing pledged)."""
    if market_value == 0:
        return None if outstanding == 0 else Decimal("Infinity")
    return outstanding / market_value


@dataclass(frozen=True, slots=True)
class Certificate:
    """A borrowing base certificate: every lot with its eligibility, and the BB."""

    facility_id: str
    as_of: datetime
    lots: tuple[LotEligibility, ...]
    base: BorrowingBase

    def ineligible_by_reason(self) -> dict[Reason, Decimal]:
        """Quantity of ineligible lots per reason (uom of each SKU, summed across SKUs)."""
        out: dict[Reason, Decimal] = {}
        for le in self.lots:
            if le.reason is not None:
                out[le.reason] = out.get(le.reason, ZERO) + le.lot.quantity
        return out


def certify(
    facility: Facility,
    lots: Iterable[Lot],
    prices: Mapping[str, PricePoint | None],
    haircuts: Mapping[str, Decimal],
    now: datetime,
) -> Certificate:
    """Full evaluation from lot states: the reference the incremental path must agree with."""
    judged = tuple(
        LotEligibility(lot, ineligibility(lot, facility, prices.get(lot.sku_id), now))
        for lot in sorted(lots, key=lambda lot: lot.lot_id)
    )
    exposures = exposures_from(facility, judged, prices, haircuts)
    return Certificate(facility.facility_id, now, judged, borrowing_base(exposures, facility.reserves))


def exposures_from(
    facility: Facility,
    judged: Iterable[LotEligibility],
    prices: Mapping[str, PricePoint | None],
    haircuts: Mapping[str, Decimal],
) -> list[SkuExposure]:
    pledged: dict[str, Decimal] = {}
    eligible: dict[str, Decimal] = {}
    for le in judged:
        lot = le.lot
        if lot.pledged and lot.in_warehouse:
            pledged[lot.sku_id] = pledged.get(lot.sku_id, ZERO) + lot.quantity
        if le.eligible:
            eligible[lot.sku_id] = eligible.get(lot.sku_id, ZERO) + lot.quantity
    out = []
    for sku_id, terms in facility.terms.items():
        point = prices.get(sku_id)
        out.append(
            SkuExposure(
                sku_id,
                pledged.get(sku_id, ZERO),
                eligible.get(sku_id, ZERO),
                point.price if point else None,
                haircuts.get(sku_id, facility.haircut_cap),
                terms.advance_rate,
                terms.concentration_limit,
            )
        )
    return out
