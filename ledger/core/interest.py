"""Daily interest accrual, actual/365 fixed, on outstanding principal (pure).

    daily interest(D) = round_half_even(principal at end of day D x annual rate / 365)

Conventions:
- Day count act/365 fixed: every calendar day accrues 1/365 of the annual rate, also in leap
  years (a leap year then earns 366/365 of the annual rate).
- The principal of day D is its END-OF-DAY balance: a drawdown at 15:00 on D accrues for all
  of D, and principal repaid on D accrues nothing for D. Changes during a day count only
  through that day's closing balance.
- Rounding: each day's interest is rounded half-even to the currency's minor unit on its own
  (common bank practice: each day's accrual is a booked amount). A period's interest is the
  sum of the rounded days, which may differ by a few minor units from rounding the period total.
- Periods are half-open [from_date, to_date): from_date accrues, to_date does not.
- Business dates: a posting's `at` is turned into a date in the facility's time zone, passed in
  (`PrincipalTimeline.from_postings(..., tz=...)`); this module never reads a clock.

Units: principal in currency units, annual rate as a fraction (Decimal("0.073") = 7.30 %),
days as calendar dates.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise

from ledger.core.errors import InvalidAmount, InvalidInput
from ledger.core.money import quantize_money, to_decimal
from ledger.core.posting import Balances, Posting

__all__ = [
    "DAYS_IN_YEAR",
    "DailyAccrual",
    "InvalidPeriod",
    "PrincipalTimeline",
    "accrue",
    "daily_interest",
    "total_interest",
]

DAYS_IN_YEAR = 365
ZERO = Decimal(0)


class InvalidPeriod(InvalidInput):
    """A period that ends before it starts."""

    code = "invalid_period"

    def __init__(self, start: object, end: object) -> None:
        super().__init__(f"period [{start}, {end}) ends before it starts", start=str(start), end=str(end))
        self.start = start
        self.end = end


def _non_negative(value: object, field: str) -> Decimal:
    amount = to_decimal(value, field=field)
    if amount < 0:
        raise InvalidAmount(field, amount, "must not be negative")
    return amount


def daily_interest(principal: Decimal, annual_rate: Decimal, currency: str) -> Decimal:
    """One day's interest on `principal` (currency units, >= 0) at `annual_rate` (fraction, >= 0).

    principal x annual_rate / 365, rounded half-even to the currency's minor unit.
    Example: EUR 100,000.00 at 0.073 -> 20.00.
    """
    p = _non_negative(principal, "principal")
    r = _non_negative(annual_rate, "annual_rate")
    return quantize_money(p * r / DAYS_IN_YEAR, currency)


@dataclass(frozen=True, slots=True)
class DailyAccrual:
    """Interest for one calendar day: end-of-day `principal` and the rounded `amount`."""

    date: dt.date
    principal: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PrincipalTimeline:
    """End-of-day principal as a step function of the date.

    `steps` holds (date, end-of-day principal) for the days the principal changed, dates
    strictly increasing; later days carry the last value; days before the first step have
    principal 0.
    """

    steps: tuple[tuple[dt.date, Decimal], ...] = ()
    _dates: tuple[dt.date, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = tuple((day, _non_negative(p, f"principal on {day}")) for day, p in self.steps)
        dates = tuple(day for day, _ in steps)
        if any(a >= b for a, b in pairwise(dates)):
            raise InvalidInput("timeline dates must be strictly increasing")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "_dates", dates)

    def on(self, day: dt.date) -> Decimal:
        """End-of-day principal on `day` (currency units)."""
        index = bisect_right(self._dates, day)
        return self.steps[index - 1][1] if index else ZERO

    @classmethod
    def from_mapping(cls, principal_by_day: Mapping[dt.date, Decimal]) -> PrincipalTimeline:
        """From {date: end-of-day principal} on the days it changed (a full daily map works too)."""
        return cls(tuple(sorted(principal_by_day.items())))

    @classmethod
    def from_postings(cls, postings: Iterable[Posting], tz: dt.tzinfo) -> PrincipalTimeline:
        """End-of-day principal of one facility's postings, days taken in time zone `tz`.

        Postings are ordered by `at` (stable: equal times keep their given order); the last
        posting of a day sets that day's closing principal.
        """
        balances = Balances()
        closing: dict[dt.date, Decimal] = {}
        for posting in sorted(postings, key=lambda p: p.at):
            balances = balances.apply(posting)
            closing[posting.at.astimezone(tz).date()] = balances.principal
        return cls.from_mapping(closing)


def accrue(
    principal_timeline: PrincipalTimeline | Mapping[dt.date, Decimal],
    annual_rate: Decimal,
    from_date: dt.date,
    to_date: dt.date,
    currency: str,
) -> list[DailyAccrual]:
    """The daily accrual schedule for [from_date, to_date), one entry per calendar day.

    `principal_timeline` gives the end-of-day principal (see `PrincipalTimeline`; a mapping
    is read as its steps). Days with zero principal appear with amount 0, so the schedule is
    complete; booking skips them. `annual_rate` is a fraction (>= 0).
    """
    if to_date < from_date:
        raise InvalidPeriod(from_date, to_date)
    timeline = (
        principal_timeline
        if isinstance(principal_timeline, PrincipalTimeline)
        else PrincipalTimeline.from_mapping(principal_timeline)
    )
    schedule = []
    for n in range((to_date - from_date).days):
        day = from_date + dt.timedelta(days=n)
        principal = timeline.on(day)
        amount = daily_interest(principal, annual_rate, currency)
        schedule.append(DailyAccrual(day, principal, amount))
    return schedule


def total_interest(accruals: Iterable[DailyAccrual]) -> Decimal:
    """Sum of the (already rounded) daily amounts, currency units."""
    return sum((a.amount for a in accruals), ZERO)
