"""Cost-plus pricing of a facility's interest rate (pure).

    rate = funding cost + operating cost + risk premium(borrower tier) + margin

All rates are annual, as Decimal fractions (Decimal("0.035") = 3.50 % a year), not rounded:
the rate is a contract term, rounding applies to the interest it produces (see interest.py).
Each component must lie in [0, 1): a value of 1 or more is almost surely a percentage typed
where a fraction was meant (3.5 instead of 0.035), so it is refused rather than priced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from ledger.core.errors import InvalidAmount, InvalidInput
from ledger.core.money import to_decimal

__all__ = ["RateBreakdown", "RatePlan", "UnknownTier", "facility_rate"]


class UnknownTier(InvalidInput):
    """A borrower tier the rate plan has no risk premium for.

    An input error (422), not a missing resource: the tier arrives in a request body.
    """

    code = "unknown_tier"

    def __init__(self, tier: str, known: tuple[str, ...]) -> None:
        super().__init__(f"no risk premium for tier {tier!r}; known tiers: {known}", tier=tier)
        self.tier = tier
        self.known = known


def _annual_fraction(value: object, field: str) -> Decimal:
    rate = to_decimal(value, field=field)
    if not 0 <= rate < 1:
        raise InvalidAmount(field, rate, "must be an annual rate as a fraction in [0, 1)")
    return rate


@dataclass(frozen=True, slots=True)
class RatePlan:
    """The components of a cost-plus rate, annual fractions; risk premium per borrower tier."""

    funding_cost: Decimal
    operating_cost: Decimal
    risk_premium_by_tier: Mapping[str, Decimal]
    margin: Decimal

    def __post_init__(self) -> None:
        for name in ("funding_cost", "operating_cost", "margin"):
            object.__setattr__(self, name, _annual_fraction(getattr(self, name), name))
        premiums = {
            tier: _annual_fraction(p, f"risk_premium[{tier}]")
            for tier, p in self.risk_premium_by_tier.items()
        }
        object.__setattr__(self, "risk_premium_by_tier", MappingProxyType(premiums))

    def __hash__(self) -> int:
        premiums = tuple(sorted(self.risk_premium_by_tier.items()))
        return hash((self.funding_cost, self.operating_cost, premiums, self.margin))


@dataclass(frozen=True, slots=True)
class RateBreakdown:
    """A priced rate and its parts (annual fractions); total = the sum of the four parts."""

    funding_cost: Decimal
    operating_cost: Decimal
    risk_premium: Decimal
    margin: Decimal
    total: Decimal
    tier: str


def facility_rate(plan: RatePlan, tier: str) -> RateBreakdown:
    """Price a facility for a borrower of `tier`; UnknownTier if the plan has no premium for it."""
    try:
        premium = plan.risk_premium_by_tier[tier]
    except KeyError:
        raise UnknownTier(tier, tuple(sorted(plan.risk_premium_by_tier))) from None
    total = plan.funding_cost + plan.operating_cost + premium + plan.margin
    return RateBreakdown(plan.funding_cost, plan.operating_cost, premium, plan.margin, total, tier)
