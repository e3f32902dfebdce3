"""How a repayment is split: accrued interest first, then fees, then principal (pure).

Invariants of `allocate_repayment`: the parts sum exactly to the amount; no part exceeds what
is owed on it; fees are paid only once interest is fully paid, principal only once interest and
fees are. Amounts are currency units at the currency's minor unit, so the split needs no
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.core.errors import InvalidAmount, Overpayment
from ledger.core.money import minor_unit, quantize_money, require_positive, to_decimal

__all__ = ["Allocation", "Owed", "allocate_repayment"]

ZERO = Decimal(0)


def _non_negative(value: object, field: str) -> Decimal:
    amount = to_decimal(value, field=field)
    if amount < 0:
        raise InvalidAmount(field, amount, "must not be negative")
    return amount


@dataclass(frozen=True, slots=True)
class Owed:
    """What a borrower owes, in currency units, each part >= 0."""

    interest: Decimal
    fees: Decimal
    principal: Decimal

    def __post_init__(self) -> None:
        for name in ("interest", "fees", "principal"):
            object.__setattr__(self, name, _non_negative(getattr(self, name), f"owed {name}"))

    @property
    def total(self) -> Decimal:
        return self.interest + self.fees + self.principal


@dataclass(frozen=True, slots=True)
class Allocation:
    """A repayment's split in currency units; `total` is the amount repaid."""

    interest: Decimal
    fees: Decimal
    principal: Decimal

    @property
    def total(self) -> Decimal:
        return self.interest + self.fees + self.principal


def _check_minor_unit(value: Decimal, currency: str, field: str) -> Decimal:
    if quantize_money(value, currency) != value:
        raise InvalidAmount(field, value, f"has more than {minor_unit(currency)} decimals")
    return value


def allocate_repayment(amount: Decimal, owed: Owed, currency: str, *, facility_id: str = "") -> Allocation:
    """Split `amount` (currency units, > 0, at the minor unit): interest, then fees, then principal.

    Raises InvalidAmount for a zero, negative, float or sub-minor-unit amount, and Overpayment
    (offered = amount, owed = owed.total exactly) when the amount exceeds everything owed.
    `facility_id` only labels the error.
    """
    value = require_positive(to_decimal(amount, field="repayment amount"), field="repayment amount")
    _check_minor_unit(value, currency, "repayment amount")
    for name in ("interest", "fees", "principal"):
        _check_minor_unit(getattr(owed, name), currency, f"owed {name}")
    if value > owed.total:
        raise Overpayment(facility_id, value, owed.total, currency)
    interest = min(value, owed.interest)
    fees = min(value - interest, owed.fees)
    return Allocation(interest=interest, fees=fees, principal=value - interest - fees)
