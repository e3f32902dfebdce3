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



def money_text(amount: Decimal, currency: str) -> str:
    """An amount as the API and the records show it: plain digits (never "1.00E+6"), at least the
    currency's minor unit of decimals ("100" -> "100.00" for EUR), and more only where the value
    has them (a borrowing base of 122304.125 stays "122304.125"; "122304.000000000" is "122304.00").

    Lossless: `Decimal(money_text(x, c)) == x` for every finite x. Infinities and NaN keep their
    names ("Infinity"); a negative zero is "0.00".
    """
    step = minor_step(currency)
    try:
        shown = amount.quantize(step)  # exact when the value has no digit beyond the minor unit
    except InvalidOperation:  # infinite, or more digits than the context holds
        return _plain(amount, minor_unit(currency))
    if shown != amount:  # significant digits beyond the minor unit (or NaN): all of them
        return _plain(amount, minor_unit(currency))
    return str(shown) if shown else str(abs(shown))  # "-0.00" -> "0.00"; str is plain at this scale


def decimal_text(value: Decimal) -> str:
    """A rate, ratio or quantity in plain digits without trailing zeros: "0.020000" -> "0.02",
    "1.00E+6" -> "1000000", "10" -> "10". Lossless like `money_text`."""
    text = str(value)  # the common case ("0.65", "10") is already plain and short
    if value and "E" not in text and not ("." in text and text.endswith("0")):
        return text
    return _plain(value, 0)


def _plain(value: Decimal, places: int) -> str:
    """`value` in positional notation with at least `places` decimals and no trailing zero
    beyond them; digit by digit, so no context precision can round it."""
    if not value.is_finite():
        return str(value)
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if not any(digits):
        sign, digits, exponent = 0, (0,), 0
    coefficient = list(digits)
    while exponent < -places and len(coefficient) > 1 and coefficient[-1] == 0:
        coefficient.pop()
        exponent += 1
    if exponent > -places:  # pad with zeros down to the minor unit
        coefficient += [0] * (exponent + places)
        exponent = -places
    return format(Decimal((sign, tuple(coefficient), exponent)), "f")
