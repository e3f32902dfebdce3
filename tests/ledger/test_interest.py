"""Daily act/365 interest on end-of-day principal, each day rounded half-even."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.errors import InvalidAmount, InvalidInput
from ledger.core.interest import (
    DailyAccrual,
    InvalidPeriod,
    PrincipalTimeline,
    accrue,
    daily_interest,
    total_interest,
)
from ledger.core.posting import Balances, drawdown_posting, repayment_postings

D = Decimal
RATE = D("0.073")  # 7.30 % a year: 0.073 / 365 = 0.0002 a day, so interest is easy by hand


def test_one_hundred_thousand_at_seven_thirty_earns_twenty_a_day() -> None:
    assert daily_interest(D("100000.00"), RATE, "EUR") == D("20.00")


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (D("1250.00"), D("0.12")),  # 1250 x 0.0365 / 365 = 0.125 -> to the even cent
        (D("1350.00"), D("0.14")),  # 0.135 -> to the even cent
        (D("1260.00"), D("0.13")),  # 0.126 -> nearest
    ],
)
def test_each_day_rounds_half_even(principal: Decimal, expected: Decimal) -> None:
    assert daily_interest(principal, D("0.0365"), "EUR") == expected


def test_yen_round_to_whole_yen_half_even() -> None:
    assert daily_interest(D(1_000_000), RATE, "JPY") == D(200)
    assert daily_interest(D(2500), D("0.365"), "JPY") == D(2)  # 2.5 -> 2
    assert daily_interest(D(3500), D("0.365"), "JPY") == D(4)  # 3.5 -> 4


def test_floats_and_negatives_are_refused() -> None:
    with pytest.raises(InvalidAmount, match="float"):
        daily_interest(100000.0, RATE, "EUR")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="float"):
        daily_interest(D(100000), 0.073, "EUR")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        daily_interest(D(-1), RATE, "EUR")
    with pytest.raises(InvalidAmount):
        daily_interest(D(1), D("-0.01"), "EUR")


def test_thirty_day_schedule_with_a_drawdown_and_a_repayment() -> None:
    # 100,000.00 from Jan 1; +50,000.00 drawn on Jan 16; 39,300.00 principal repaid on Jan 21.
    timeline = {
        date(2024, 1, 1): D("100000.00"),
        date(2024, 1, 16): D("150000.00"),
        date(2024, 1, 21): D("110700.00"),
    }
    schedule = accrue(timeline, RATE, date(2024, 1, 1), date(2024, 1, 31), "EUR")
    assert len(schedule) == 30  # [Jan 1, Jan 31): Jan 31 itself does not accrue
    assert schedule[0] == DailyAccrual(date(2024, 1, 1), D("100000.00"), D("20.00"))
    assert schedule[14] == DailyAccrual(date(2024, 1, 15), D("100000.00"), D("20.00"))
    assert schedule[15] == DailyAccrual(date(2024, 1, 16), D("150000.00"), D("30.00"))
    assert schedule[20] == DailyAccrual(date(2024, 1, 21), D("110700.00"), D("22.14"))
    assert schedule[-1].date == date(2024, 1, 30)
    assert total_interest(schedule) == D("671.40")  # 15 x 20.00 + 5 x 30.00 + 10 x 22.14


def test_daily_rounding_can_differ_from_rounding_the_period() -> None:
    # 0.125 a day: rounded each day to 0.12, so two days book 0.24, not round(0.25).
    timeline = {date(2024, 1, 1): D("1250.00")}
    schedule = accrue(timeline, D("0.0365"), date(2024, 1, 1), date(2024, 1, 3), "EUR")
    assert [a.amount for a in schedule] == [D("0.12"), D("0.12")]
    assert total_interest(schedule) == D("0.24")


def test_days_before_the_first_drawdown_accrue_nothing_but_are_listed() -> None:
    timeline = {date(2024, 1, 3): D("100000")}
    schedule = accrue(timeline, RATE, date(2024, 1, 1), date(2024, 1, 4), "EUR")
    assert [(a.principal, a.amount) for a in schedule] == [
        (D(0), D("0.00")),
        (D(0), D("0.00")),
        (D("100000"), D("20.00")),
    ]


def test_leap_day_accrues_one_365th_too() -> None:
    timeline = {date(2024, 2, 1): D("100000")}
    schedule = accrue(timeline, RATE, date(2024, 2, 28), date(2024, 3, 1), "EUR")
    assert [a.date for a in schedule] == [date(2024, 2, 28), date(2024, 2, 29)]
    assert total_interest(schedule) == D("40.00")


def test_period_is_half_open_and_must_not_run_backwards() -> None:
    assert accrue({}, RATE, date(2024, 1, 5), date(2024, 1, 5), "EUR") == []
    with pytest.raises(InvalidPeriod):
        accrue({}, RATE, date(2024, 1, 5), date(2024, 1, 4), "EUR")


def test_timeline_dates_must_increase() -> None:
    with pytest.raises(InvalidInput):
        PrincipalTimeline(((date(2024, 1, 2), D(1)), (date(2024, 1, 1), D(2))))
    with pytest.raises(InvalidAmount):
        PrincipalTimeline(((date(2024, 1, 2), D(-1)),))


def test_end_of_day_principal_counts_for_the_whole_day() -> None:
    # Drawn at 09:00 and half repaid at 17:00 on Jan 2: Jan 2 accrues on the 17:00 balance only.
    draw = drawdown_posting("d1", "fac-1", datetime(2024, 1, 2, 9, tzinfo=UTC), D("100000"), "EUR")
    owed = Balances().apply(draw).owed
    (repay,) = repayment_postings(
        "r1", "fac-1", datetime(2024, 1, 2, 17, tzinfo=UTC), D("50000"), owed, "EUR"
    )
    timeline = PrincipalTimeline.from_postings([repay, draw], tz=UTC)  # order of `at`, not given
    assert timeline.on(date(2024, 1, 1)) == 0
    assert timeline.on(date(2024, 1, 2)) == D("50000")
    assert timeline.on(date(2024, 1, 9)) == D("50000")
    schedule = accrue(timeline, RATE, date(2024, 1, 1), date(2024, 1, 3), "EUR")
    assert [a.amount for a in schedule] == [D("0.00"), D("10.00")]


def test_business_date_is_taken_in_the_facility_time_zone() -> None:
    # 23:30 UTC on Jan 1 is 00:30 on Jan 2 at UTC+1: the drawdown belongs to Jan 2 there.
    plus_one = timezone(timedelta(hours=1))
    at = datetime(2024, 1, 1, 23, 30, tzinfo=UTC)
    draw = drawdown_posting("d1", "fac-1", at, D("100000"), "EUR")
    in_utc = PrincipalTimeline.from_postings([draw], tz=UTC)
    in_plus_one = PrincipalTimeline.from_postings([draw], tz=plus_one)
    assert in_utc.on(date(2024, 1, 1)) == D("100000")
    assert in_plus_one.on(date(2024, 1, 1)) == 0
    assert in_plus_one.on(date(2024, 1, 2)) == D("100000")


@given(
    st.integers(min_value=0, max_value=10**12).map(lambda c: D(c).scaleb(-2)),
    st.integers(min_value=0, max_value=9999).map(lambda bp: D(bp).scaleb(-4)),
)
def test_a_day_is_within_half_a_cent_of_the_exact_interest(
    principal: Decimal, rate: Decimal
) -> None:
    exact = principal * rate / 365
    booked = daily_interest(principal, rate, "EUR")
    assert booked == booked.quantize(D("0.01"))
    assert abs(booked - exact) <= D("0.005")
