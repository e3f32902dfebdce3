"""Cost-plus pricing: funding + operating + risk premium (by tier) + margin."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.core.errors import InvalidAmount, InvalidInput
from ledger.core.interest import daily_interest
from ledger.core.pricing import RateBreakdown, RatePlan, UnknownTier, facility_rate

D = Decimal


def plan() -> RatePlan:
    return RatePlan(
        funding_cost=D("0.035"),
        operating_cost=D("0.010"),
        risk_premium_by_tier={"A": D("0.005"), "B": D("0.0155"), "C": D("0.030")},
        margin=D("0.0125"),
    )


def test_tier_b_prices_at_seven_thirty_with_its_breakdown() -> None:
    assert facility_rate(plan(), "B") == RateBreakdown(
        funding_cost=D("0.035"),
        operating_cost=D("0.010"),
        risk_premium=D("0.0155"),
        margin=D("0.0125"),
        total=D("0.0730"),  # 3.5 % + 1.0 % + 1.55 % + 1.25 %
        tier="B",
    )


def test_riskier_tier_pays_only_its_premium_more() -> None:
    a, c = facility_rate(plan(), "A"), facility_rate(plan(), "C")
    assert c.total - a.total == D("0.025")
    assert a.total == D("0.0625")


def test_the_priced_rate_feeds_daily_interest() -> None:
    rate = facility_rate(plan(), "B").total
    assert daily_interest(D("100000.00"), rate, "EUR") == D("20.00")


def test_unknown_tier_is_a_typed_error_naming_the_known_tiers() -> None:
    with pytest.raises(UnknownTier) as err:
        facility_rate(plan(), "D")
    assert isinstance(err.value, InvalidInput)
    assert err.value.tier == "D"
    assert err.value.known == ("A", "B", "C")
    assert err.value.code == "unknown_tier"


@pytest.mark.parametrize(
    "bad",
    [D("3.5"), D("1"), D("-0.001")],
    ids=["percent-typed-as-fraction", "hundred-percent", "negative"],
)
def test_components_must_be_annual_fractions_below_one(bad: Decimal) -> None:
    with pytest.raises(InvalidAmount):
        RatePlan(bad, D("0.01"), {"A": D("0.01")}, D("0.01"))
    with pytest.raises(InvalidAmount):
        RatePlan(D("0.03"), D("0.01"), {"A": bad}, D("0.01"))


def test_floats_are_refused() -> None:
    with pytest.raises(InvalidAmount, match="float"):
        RatePlan(0.035, D("0.01"), {"A": D("0.01")}, D("0.01"))  # type: ignore[arg-type]


def test_the_plan_does_not_change_when_its_source_dict_does() -> None:
    premiums = {"A": D("0.005")}
    p = RatePlan(D("0.035"), D("0.010"), premiums, D("0.0125"))
    premiums["A"] = D("0.5")
    premiums["Z"] = D("0.01")
    assert facility_rate(p, "A").risk_premium == D("0.005")
    with pytest.raises(UnknownTier):
        facility_rate(p, "Z")
    with pytest.raises(TypeError):
        p.risk_premium_by_tier["A"] = D("0.9")  # type: ignore[index]
    assert hash(p) == hash(RatePlan(D("0.035"), D("0.010"), {"A": D("0.005")}, D("0.0125")))
