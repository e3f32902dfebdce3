"""The ledger's errors: one rooted hierarchy, facts as attributes.

LedgerError
├── InvalidInput                  bad input, nothing written
│   ├── InvalidAmount             zero/negative/float/non-numeric amount or quantity
│   ├── CurrencyMismatch          amount or price in another currency than expected
│   └── InvalidReference          reference data that contradicts itself
├── NotFound                      unknown id
│   ├── UnknownSku / UnknownSite / UnknownZone / UnknownFacility / UnknownBorrower / UnknownLot
├── Conflict                      the request contradicts stored state
│   ├── DuplicateEpc              an EPC already registered to another lot
│   ├── DuplicateId               an id already used with other fields
│   ├── DoublePledge              goods already pledged to another facility (Qingdao)
│   └── InvalidTransition         a lot cannot move from its status by this movement
├── CreditError                   the facility's money rules refuse a request
│   ├── FacilityFrozen / FacilityInactive
│   ├── InsufficientAvailability  drawdown above availability (amounts attached)
│   ├── Overpayment               repayment above what is owed (exact amount owed attached)
│   └── ReleaseRefused            release would leave outstanding above the BB
├── IdempotencyConflict           same key, different request
└── JournalCorrupted              hash chain verification failed
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    code: str = "ledger_error"

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message = message
        self.facts = facts

    def __str__(self) -> str:
        return self.message


class InvalidInput(LedgerError):
    code = "invalid_input"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"{field} {why} (got {_shown(value)})", field=field, value=str(value))
        self.field = field
        self.value = value


def _shown(value: object) -> str:
    """A refused value as its sender wrote it: a Decimal as digits ("100.005", not
    "Decimal('100.005')"), anything else as its repr (a float shows it is one: 0.1)."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return f"{value:f}" if isinstance(exponent, int) and abs(exponent) <= 64 else str(value)
    return repr(value)


class CurrencyMismatch(InvalidInput):
    code = "currency_mismatch"

    def __init__(self, expected: str, got: str, context: str) -> None:
        super().__init__(
            f"currency mismatch in {context}: expected {expected}, got {got}",
            expected=expected,
            got=got,
        )
        self.expected = expected
        self.got = got


class InvalidReference(InvalidInput):
    code = "invalid_reference"


class NotFound(LedgerError):
    code = "not_found"
    kind = "object"

    def __init__(self, ident: str) -> None:
        super().__init__(f"unknown {self.kind} {ident!r}", id=ident)
        self.ident = ident


class UnknownSku(NotFound):
    code = "unknown_sku"
    kind = "SKU"


class UnknownSite(NotFound):
    code = "unknown_site"
    kind = "site"


class UnknownZone(NotFound):
    code = "unknown_zone"
    kind = "zone"


class UnknownFacility(NotFound):
    code = "unknown_facility"
    kind = "facility"


class UnknownBorrower(NotFound):
    code = "unknown_borrower"
    kind = "borrower"


class UnknownLot(NotFound):
    code = "unknown_lot"
    kind = "lot"


class Conflict(LedgerError):
    code = "conflict"


class DuplicateEpc(Conflict):
    code = "duplicate_epc"

    def __init__(self, epc: str, existing_lot: str) -> None:
        super().__init__(
            f"EPC {epc} is already registered to lot {existing_lot}",
            epc=epc,
            existing_lot=existing_lot,
        )
        self.epc = epc
        self.existing_lot = existing_lot


class DuplicateId(Conflict):
    code = "duplicate_id"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} already exists with other fields", kind=kind, id=ident)


class DoublePledge(Conflict):
    code = "double_pledge"

    def __init__(self, lot_id: str, epc: str, pledged_to: str, requested_by: str) -> None:
        super().__init__(
            f"lot {lot_id} (EPC {epc}) is already pledged to facility {pledged_to}; "
            f"facility {requested_by} cannot take a second pledge over the same goods",
            lot_id=lot_id,
            epc=epc,
            pledged_to=pledged_to,
            requested_by=requested_by,
        )
        self.lot_id = lot_id
        self.epc = epc
        self.pledged_to = pledged_to
        self.requested_by = requested_by


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, lot_id: str, status: str, movement: str) -> None:
        super().__init__(
            f"lot {lot_id} in status {status} cannot take a {movement}",
            lot_id=lot_id,
            status=status,
            movement=movement,
        )
        self.lot_id = lot_id
        self.status = status
        self.movement = movement


class CreditError(LedgerError):
    code = "credit_error"


class FacilityFrozen(CreditError):
    code = "facility_frozen"


class FacilityInactive(CreditError):
    code = "facility_inactive"


class InsufficientAvailability(CreditError):
    code = "insufficient_availability"

    def __init__(
        self, facility_id: str, requested: Decimal, available: Decimal, currency: str | None = None
    ) -> None:
        asked, there = _amount(requested, currency), _amount(available, currency)
        super().__init__(
            f"drawdown of {asked} exceeds the availability of {there} on facility {facility_id}",
            facility_id=facility_id,
            requested=asked,
            available=there,
        )
        self.facility_id = facility_id
        self.requested = requested
        self.available = available


class Overpayment(CreditError):
    code = "overpayment"

    def __init__(
        self, facility_id: str, offered: Decimal, owed: Decimal, currency: str | None = None
    ) -> None:
        given, due = _amount(offered, currency), _amount(owed, currency)
        super().__init__(
            f"repayment of {given} exceeds the {due} owed on facility {facility_id}",
            facility_id=facility_id,
            offered=given,
            owed=due,
        )
        self.facility_id = facility_id
        self.offered = offered
        self.owed = owed


def _amount(value: Decimal, currency: str | None) -> str:
    """An amount in a message and its facts: `money_text` when the currency is known, else plain."""
    if currency is None:
        return f"{value:f}"
    from ledger.core.money import money_text  # money.py imports this module's InvalidAmount

    return money_text(value, currency)


class ReleaseRefused(CreditError):
    code = "release_refused"

    def __init__(self, facility_id: str, repay_first: Decimal, reason: str) -> None:
        super().__init__(
            f"release refused on facility {facility_id}: {reason}; repay {repay_first:f} first",
            facility_id=facility_id,
            repay_first=f"{repay_first:f}",
        )
        self.facility_id = facility_id
        self.repay_first = repay_first


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"


class JournalCorrupted(LedgerError):
    code = "journal_corrupted"
