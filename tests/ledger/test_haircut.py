"""Volatility haircuts, checked against numbers worked out by hand.

H = z x sigma x sqrt(T_M) x sqrt((N_R + T_M - 1) / T_M), clamped to [floor, cap], 6 decimals.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.core.haircut import HaircutPolicy, daily_volatility, haircut

D = Decimal
FLOOR, CAP = D("0.02"), D("0.60")


def test_one_percent_daily_over_twenty_days_revalued_daily_is_about_ten_point_four_percent():
    # 2.33 x 0.01 x sqrt(20) = 0.0233 x 4.4721359... = 0.1042007...
    assert haircut(D("0.01"), 20, FLOOR, CAP) == D("0.104201")


def test_a_shorter_liquidation_horizon_gives_a_smaller_haircut():
    # 2.33 x 0.01 x sqrt(10) = 0.0233 x 3.1622776... = 0.0736810...
    assert haircut(D("0.01"), 10, FLOOR, CAP) == D("0.073681")


def test_revaluing_every_five_days_instead_of_daily_widens_the_haircut():
    # sqrt(20) x sqrt((5 + 20 - 1) / 20) = sqrt(24) = 4.8989794...; 0.0233 x 4.89898 = 0.1141462...
    weekly = HaircutPolicy(revaluation_days=5)
    assert haircut(D("0.01"), 20, FLOOR, CAP, weekly) == D("0.114146")


def test_a_99_9_percent_z_score_scales_the_haircut_linearly():
    strict = HaircutPolicy(z=D("3.09"))
    # 3.09 x 0.01 x sqrt(20) = 0.0309 x 4.4721360 = 0.1381890...
    assert haircut(D("0.01"), 20, FLOOR, CAP, strict) == D("0.138189")


def test_a_calm_price_is_held_at_the_floor():
    # 2.33 x 0.0005 x sqrt(20) = 0.0052 < 0.02
    assert haircut(D("0.0005"), 20, FLOOR, CAP) == D("0.02")
    assert haircut(D("0"), 20, FLOOR, CAP) == D("0.02")


def test_a_wild_price_is_held_at_the_cap():
    # 2.33 x 0.2 x sqrt(20) = 2.084 > 0.60
    assert haircut(D("0.2"), 20, FLOOR, CAP) == D("0.60")


def test_unknown_volatility_takes_the_cap():
    assert haircut(None, 20, FLOOR, CAP) == CAP
    assert haircut(None, 20, D("0"), D("1")) == D("1")


def test_a_zero_floor_lets_the_haircut_go_to_zero():
    assert haircut(D("0"), 20, D("0"), CAP) == 0


def test_volatility_is_the_sample_std_dev_of_daily_log_returns():
    # returns ln(1.1) and ln(0.9); with two values the sample std-dev is |r1 - r2| / sqrt(2)
    # = (0.0953102 + 0.1053605) / 1.4142136 = 0.1418956...
    sigma = daily_volatility([D("100"), D("110"), D("99")], HaircutPolicy(min_returns=2))
    assert sigma == D("0.1418956095")


def test_a_steady_trend_has_no_volatility():
    prices = [D(100) * D("1.01") ** k for k in range(30)]
    assert daily_volatility(prices, HaircutPolicy()) == 0


def test_fewer_returns_than_the_minimum_leave_volatility_unknown_and_the_haircut_at_the_cap():
    policy = HaircutPolicy()  # 20 returns, i.e. 21 prices
    nineteen_returns = [D(100 + k % 3) for k in range(20)]
    assert daily_volatility(nineteen_returns, policy) is None
    assert haircut(daily_volatility(nineteen_returns, policy), 20, FLOOR, CAP) == CAP
    assert daily_volatility([*nineteen_returns, D(100)], policy) is not None
    assert daily_volatility([], policy) is None


@pytest.mark.parametrize("min_returns", [0, 1])
def test_a_single_return_never_yields_a_volatility_whatever_the_policy(min_returns):
    # numpy's sample std-dev of one value is NaN (with a RuntimeWarning); fixed in haircut.py
    policy = HaircutPolicy(min_returns=min_returns)
    assert daily_volatility([D("100"), D("101")], policy) is None
    assert daily_volatility([D("100")], policy) is None


def test_only_the_last_window_of_prices_counts():
    policy = HaircutPolicy(window=5, min_returns=5)
    crash_long_ago = [D("100"), D("1"), D("1000")]
    assert daily_volatility([*crash_long_ago, *[D("100")] * 6], policy) == 0
    assert daily_volatility([*crash_long_ago, *[D("100")] * 5], policy) > 0


def test_volatility_is_a_decimal_with_ten_places():
    sigma = daily_volatility([D("100"), D("110"), D("99")], HaircutPolicy(min_returns=2))
    assert isinstance(sigma, Decimal) and sigma.as_tuple().exponent == -10
