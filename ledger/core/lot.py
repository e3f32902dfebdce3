"""Lots and the movements that change them (pure state machine).

A lot is one physical unit (pallet, coil, bag) identified by its RFID EPC. Every change of a lot
is a `Movement`; `apply_movement` returns the lot's next state or raises `InvalidTransition`.
The journal stores the resulting state of each movement, so replaying it rebuilds positions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from ledger.core.errors import InvalidAmount, InvalidReference, InvalidTransition
from ledger.core.reference import check_id


class LotStatus(StrEnum):
    EXPECTED = "expected"  # announced, not yet through the gate
    IN_STOCK = "in_stock"  # in the warehouse, not pledged
    PLEDGED = "pledged"  # in the warehouse and pledged
    RELEASE_AUTHORISED = "release_authorised"  # the lender approved its leaving
    RELEASED = "released"  # left with an approved release
    REMOVED = "removed"  # left WITHOUT a release (a fact alerting acts on)
    MISSING = "missing"  # not found where the ledger says it is
    QUARANTINED = "quarantined"  # damaged or disputed, held apart


IN_WAREHOUSE = frozenset(
    {LotStatus.IN_STOCK, LotStatus.PLEDGED, LotStatus.RELEASE_AUTHORISED, LotStatus.QUARANTINED}
)
GONE = frozenset({LotStatus.RELEASED, LotStatus.REMOVED})


class MovementKind(StrEnum):
    REGISTRATION = "registration"  # lot announced (expected) or taken on in stock
    PLEDGE = "pledge"
    RECEIPT = "receipt"
    ZONE_TRANSFER = "zone_transfer"
    RELEASE_AUTHORISATION = "release_authorisation"
    AUTHORISED_RELEASE = "authorised_release"
    REMOVAL_WITHOUT_RELEASE = "removal_without_release"
    ADJUSTMENT = "adjustment"  # quantity, quarantine, missing/found, verification


@dataclass(frozen=True, slots=True)
class Lot:
    """State of one lot. `quantity` is in the SKU's unit; `received_at` is when it came in."""

    lot_id: str
    facility_id: str
    epc: str
    sku_id: str
    quantity: Decimal
    site_id: str
    zone_id: str | None
    status: LotStatus
    pledged: bool = False
    verified: bool = False
    received_at: datetime | None = None

    def __post_init__(self) -> None:
        check_id("lot", self.lot_id)
        if not _positive_decimal(self.quantity):
            raise InvalidAmount("quantity", self.quantity, "must be a finite Decimal greater than zero")
        if not self.epc or len(self.epc) > 128:
            raise InvalidReference(f"EPC {self.epc!r} must be 1-128 characters")

    @property
    def in_warehouse(self) -> bool:
        return self.status in IN_WAREHOUSE


@dataclass(frozen=True, slots=True)
class Movement:
    """A requested change to one lot, with the evidence (device event ids) that caused it.

    Fields besides kind/lot_id/at are used by the kinds that need them: `zone_id`/`site_id` for
    receipt and zone transfer, `quantity` and `status` for adjustments, `verified` for receipts
    seen by a sensor.
    """

    kind: MovementKind
    lot_id: str
    at: datetime
    evidence: tuple[str, ...] = ()
    site_id: str | None = None
    zone_id: str | None = None
    quantity: Decimal | None = None
    status: LotStatus | None = None
    verified: bool | None = None
    reason: str | None = None


def _positive_decimal(value: object) -> bool:
    # is_finite first: comparing a NaN Decimal raises decimal.InvalidOperation, not our error.
    return isinstance(value, Decimal) and value.is_finite() and value > 0


_ADJUSTABLE_TO = frozenset({LotStatus.QUARANTINED, LotStatus.MISSING, LotStatus.IN_STOCK, LotStatus.PLEDGED})


def _settled_status(lot: Lot) -> LotStatus:
    return LotStatus.PLEDGED if lot.pledged else LotStatus.IN_STOCK


def apply_movement(lot: Lot, mv: Movement) -> Lot:
    """Return the lot after `mv`; raise InvalidTransition if its status does not allow it."""
    handler = _HANDLERS.get(mv.kind)
    if handler is None or mv.lot_id != lot.lot_id:
        raise InvalidTransition(lot.lot_id, lot.status, mv.kind)
    return handler(lot, mv)


def _refuse(lot: Lot, mv: Movement) -> InvalidTransition:
    return InvalidTransition(lot.lot_id, lot.status, mv.kind)


def _pledge(lot: Lot, mv: Movement) -> Lot:
    if lot.pledged or lot.status in GONE or lot.status == LotStatus.MISSING:
        raise _refuse(lot, mv)
    status = LotStatus.PLEDGED if lot.status == LotStatus.IN_STOCK else lot.status
    return replace(lot, pledged=True, status=status)


def _receipt(lot: Lot, mv: Movement) -> Lot:
    if lot.status != LotStatus.EXPECTED:
        raise _refuse(lot, mv)
    nxt = replace(
        lot,
        site_id=mv.site_id or lot.site_id,
        zone_id=mv.zone_id or lot.zone_id,
        received_at=mv.at,
        verified=lot.verified or bool(mv.verified),
    )
    return replace(nxt, status=_settled_status(nxt))


def _zone_transfer(lot: Lot, mv: Movement) -> Lot:
    if not lot.in_warehouse or mv.zone_id is None:
        raise _refuse(lot, mv)
    return replace(lot, zone_id=mv.zone_id, site_id=mv.site_id or lot.site_id)


def _release_authorisation(lot: Lot, mv: Movement) -> Lot:
    # Not from EXPECTED: release_authorised counts as in the warehouse, so goods that never came
    # in would enter the pledged market value (and could then be "removed").
    if lot.status not in (LotStatus.PLEDGED, LotStatus.IN_STOCK):
        raise _refuse(lot, mv)
    return replace(lot, status=LotStatus.RELEASE_AUTHORISED)


def _authorised_release(lot: Lot, mv: Movement) -> Lot:
    if lot.status != LotStatus.RELEASE_AUTHORISED:
        raise _refuse(lot, mv)
    return replace(lot, status=LotStatus.RELEASED, pledged=False)


def _removal(lot: Lot, mv: Movement) -> Lot:
    if not lot.in_warehouse and lot.status != LotStatus.MISSING:
        raise _refuse(lot, mv)
    return replace(lot, status=LotStatus.REMOVED)


def _adjustment(lot: Lot, mv: Movement) -> Lot:
    if lot.status in GONE:
        raise _refuse(lot, mv)
    nxt = lot
    if mv.quantity is not None:
        if not _positive_decimal(mv.quantity):
            raise InvalidAmount("quantity", mv.quantity, "must be a finite Decimal greater than zero")
        nxt = replace(nxt, quantity=mv.quantity)
    if mv.verified is not None:
        nxt = replace(nxt, verified=mv.verified)
    if mv.status is not None:
        # Goods not yet received are neither quarantined nor missing in the warehouse; allowing
        # it let a lot reach in_stock/pledged without a receipt (no received_at: never ageing).
        if mv.status not in _ADJUSTABLE_TO or lot.status == LotStatus.EXPECTED:
            raise _refuse(lot, mv)
        target = mv.status
        if target in (LotStatus.IN_STOCK, LotStatus.PLEDGED):  # back to normal (found, cleared)
            target = _settled_status(nxt)
        nxt = replace(nxt, status=target)
    return nxt


def _registration(lot: Lot, mv: Movement) -> Lot:
    raise _refuse(lot, mv)  # a lot is registered once, by `register`, never moved into it


_HANDLERS = {
    MovementKind.REGISTRATION: _registration,
    MovementKind.PLEDGE: _pledge,
    MovementKind.RECEIPT: _receipt,
    MovementKind.ZONE_TRANSFER: _zone_transfer,
    MovementKind.RELEASE_AUTHORISATION: _release_authorisation,
    MovementKind.AUTHORISED_RELEASE: _authorised_release,
    MovementKind.REMOVAL_WITHOUT_RELEASE: _removal,
    MovementKind.ADJUSTMENT: _adjustment,
}
