"""Decimal money and quantity helpers.

Invariants: no float ever enters the ledger; amounts are rounded half-even to the currency's
minor unit only at the edges where money is booked (postings, statements), never mid-calculation.
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from ledger.core.errors import InvalidAmount

# ISO 4217 minor units for the currencies we lend in; unknown codes default to 2.
MINOR_UNITS: dict[str, int] = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}


def minor_unit(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (EUR -> 2, JPY -> 0)."""
    return MINOR_UNITS.get(currency.upper(), 2)


@functools.lru_cache(maxsize=256)
def minor_step(currency: str) -> Decimal:
    """The currency's smallest amount as a quantize exponent (EUR -> Decimal('0.01'))."""
    return Decimal(1).scaleb(-minor_unit(currency))


def quantize_money(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half-even (banker's rounding)."""
    exp = minor_step(currency)
    try:
        return amount.quantize(exp, rounding=ROUND_HALF_EVEN)
    except InvalidOperation as e:  # more digits than the context can hold
        raise InvalidAmount("amount", amount, "is too large") from e


def to_decimal(value: object, *, field: str = "amount") -> Decimal:
    """Convert an int, str or Decimal into a finite Decimal; floats are refused.

    Floats are refused on purpose: 0.1 as a float is not 0.1, and a ledger that accepts
    one has already lost a cent somewhere.
    """
    if type(value) is Decimal:  # the common case, first: every amount inside the ledger
        if not value.is_finite():
            raise InvalidAmount(field, value, "must be finite")
        return value
    if isinstance(value, bool | float):
        raise InvalidAmount(field, value, "must be a decimal string or integer, not a float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation as e:
            raise InvalidAmount(field, value, "is not a number") from e
    else:
        raise InvalidAmount(field, value, "must be a decimal string or integer")
    if not result.is_finite():
        raise InvalidAmount(field, value, "must be finite")
    return result


def require_positive(value: Decimal, *, field: str) -> Decimal:
    """Return value if it is > 0, else raise InvalidAmount."""
    if value <= 0:
        raise InvalidAmount(field, value, "must be greater than zero")
    return value
