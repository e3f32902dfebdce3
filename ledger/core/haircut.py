"""Volatility haircuts from price history (own-estimate VaR, Basel square-root-of-time).

    sigma      = sample standard deviation of daily log returns over the window
    H_1        = z * sigma                         (z = 2.33: 99 %, one-tailed; 1-day horizon)
    H_M        = H_1 * sqrt(T_M)                   (T_M = liquidation horizon, days)
    H          = H_M * sqrt((N_R + T_M - 1) / T_M) (N_R = revaluation interval, days; 1 with IoT)
    haircut    = clamp(H, floor, cap)

With fewer than `min_returns` returns the volatility is unknown and the haircut is the cap
(conservative). numpy lives only here; results leave as Decimal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

_SIX = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class HaircutPolicy:
    """Parameters of the haircut: window and minimum in number of daily prices, z-score."""

    window: int = 250
    min_returns: int = 20
    z: Decimal = Decimal("2.33")
    revaluation_days: int = 1


def daily_volatility(prices: Sequence[Decimal], policy: HaircutPolicy) -> Decimal | None:
    """Std-dev of daily log returns of the last `window` prices (oldest first), or None."""
    window = list(prices)[-(policy.window + 1) :]
    # A sample std-dev needs two returns whatever min_returns says: numpy would return NaN (and
    # warn) for one, and NaN cannot become a haircut.
    if len(window) - 1 < max(policy.min_returns, 2):
        return None
    arr = np.array([float(p) for p in window], dtype=np.float64)
    returns = np.diff(np.log(arr))
    sigma = float(np.std(returns, ddof=1))
    return Decimal(repr(sigma)).quantize(Decimal("0.0000000001"))


def haircut(
    sigma: Decimal | None,
    horizon_days: int,
    floor: Decimal,
    cap: Decimal,
    policy: HaircutPolicy = HaircutPolicy(),
) -> Decimal:
    """The haircut fraction for a daily volatility and a liquidation horizon in days."""
    if sigma is None:
        return cap
    t_m = horizon_days
    scale = math.sqrt(t_m) * math.sqrt((policy.revaluation_days + t_m - 1) / t_m)
    h = policy.z * sigma * Decimal(repr(scale))
    return min(cap, max(floor, h)).quantize(_SIX)
