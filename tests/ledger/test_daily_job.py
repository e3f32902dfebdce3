"""The daily jobs: idle facilities' interest booked once each day is over (lines re-checked, a
closed period's statement final), old Idempotency-Keys forgotten; the schedule, the catch-up at
start, the retry after a failure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.core.errors import IdempotencyConflict
from ledger.credit import AccrualRun, KeyedRequest
from ledger.daily_job import GRACE, DailyJob, next_run
from ledger.store.port import RequestKey, StoredResponse
from tests.ledger.test_credit_story import world
from tests.ledger.world import facility, lot, price

D = Decimal


def test_the_job_runs_a_few_minutes_after_each_midnight_utc() -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    assert next_run(day) == day + GRACE  # just after midnight, before the grace: today's run
    assert next_run(day + GRACE) == day + timedelta(days=1) + GRACE  # at the run itself: the next one
    assert next_run(day + timedelta(hours=13)) == day + timedelta(days=1) + GRACE
    assert next_run(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC) + GRACE


async def test_idle_facilities_are_accrued_once_a_day(store, clock):
    _ledger, credit = await world(store, clock)
    await credit.draw("F1", D("100000.00"))  # 7.30 %: 20.00 a day
    clock.advance(days=3)
    assert await credit.accrue_all() == AccrualRun(facilities=1, postings=3)
    assert await credit.accrue_all() == AccrualRun()  # the same day again (another process): nothing
    s = await credit.summary("F1")
    assert (s.accrued_interest, s.outstanding) == (D("60.00"), D("100060.00"))
    ok, stored, derived = await credit.check_balances("F1")
    assert ok and stored["interest_receivable"] == D("60.00"), (stored, derived)


async def test_a_closed_days_statement_has_its_interest_without_any_later_operation(store, clock):
    _ledger, credit = await world(store, clock)
    drawn_at = clock()
    await credit.draw("F1", D("100000.00"))
    clock.advance(days=2)
    await credit.accrue_all()
    start = drawn_at.replace(hour=0, minute=0)
    st = await credit.statement("F1", start, start + timedelta(days=2))  # the two days, exactly
    assert (st.drawn, st.interest_charged) == (D("100000.00"), D("40.00"))
    assert st.closing.total_owed == D("100040.00")
    assert [line.memo for line in st.lines][1:] == [
        f"interest {(start + timedelta(days=d)).date().isoformat()} act/365 on 100000.00" for d in (0, 1)
    ]


async def test_interest_that_crosses_the_warning_line_is_an_event(store, clock):
    ledger, credit = await world(store, clock)
    f3 = facility("F3", commitment=D("1000000"), reserves=D(0), warning_ltv=D("0.30"))
    await credit.open_facility(f3, "B")
    await ledger.register_lots(
        [lot(n, "F3", pledge=True, received=True, verified=True, qty="10") for n in range(7, 11)]
    )
    market = (await credit.summary("F3")).market_value
    await credit.draw("F3", (market * D("0.2995")).quantize(D("0.01")))  # just under 30 %
    clock.advance(days=30)
    await price(ledger, "CU-CATH", "8000")  # a fresh price (the same level): the goods stay eligible
    assert [e["kind"] for e in await credit.events("F3")] == []
    assert (await credit.accrue_all()).postings >= 30
    [crossed] = await credit.events("F3")
    assert (crossed["kind"], crossed["trigger"]) == ("warning_line_crossed", "interest_accrual")
    assert D(crossed["facts"]["ltv"]) > D("0.30")


class _Sleeps:
    """asyncio.sleep's stand-in: records how long the job asked to sleep, stops it after `n`."""

    def __init__(self, n: int) -> None:
        self.asked: list[float] = []
        self.n = n

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if len(self.asked) >= self.n:
            raise asyncio.CancelledError


async def test_the_job_catches_up_at_start_then_sleeps_until_the_next_run(store, clock):
    _ledger, credit = await world(store, clock)
    await credit.draw("F1", D("100000.00"))
    clock.advance(days=2)  # the API was down for two days
    sleeps = _Sleeps(1)
    job = DailyJob("interest accrual", credit.accrue_all, clock, sleeps)
    with pytest.raises(asyncio.CancelledError):
        await job.run()
    assert job.last == AccrualRun(facilities=1, postings=2) and job.completed == 1
    assert sleeps.asked == [(next_run(clock()) - clock()).total_seconds()]


class _Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def __call__(self) -> AccrualRun:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database away")
        return AccrualRun(facilities=2, postings=5)


async def test_a_failed_run_is_retried_not_fatal(clock):
    sleeps = _Sleeps(3)
    job = DailyJob("interest accrual", _Flaky(failures=2), clock, sleeps, retry_s=7.0)
    with pytest.raises(asyncio.CancelledError):
        await job.run()
    assert sleeps.asked[:2] == [7.0, 7.0] and job.last == AccrualRun(facilities=2, postings=5)


async def test_a_months_statement_holds_the_interest_of_exactly_its_days(store, clock):
    _ledger, credit = await world(store, clock)  # Monday 2026-01-05 09:00
    await credit.draw("F1", D("100000.00"))  # 20.00 a day
    clock.advance(days=29)  # Tuesday 2026-02-03
    await credit.accrue_all()
    jan, feb, mar = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3))
    january = await credit.statement("F1", jan, feb)
    assert january.interest_charged == D("20.00") * 27  # 5 to 31 January, the 31st included
    assert january.lines[-1].memo.startswith("interest 2026-01-31 ")
    february = await credit.statement("F1", feb, mar)
    assert [line.memo[:19] for line in february.lines] == ["interest 2026-02-01", "interest 2026-02-02"]


async def test_old_idempotency_keys_are_forgotten_and_cannot_book_money_twice(store, clock):
    ledger, credit = await world(store, clock)
    await credit.draw_keyed("F1", D("100.00"), keyed("old"))
    clock.advance(days=20)
    await price(ledger, "CU-CATH", "8000")  # fresh prices keep the goods eligible
    await credit.draw_keyed("F1", D("200.00"), keyed("young"))
    clock.advance(days=15)  # old: 35 days, young: 15
    await price(ledger, "CU-CATH", "8000")
    assert await credit.forget_request_keys(timedelta(days=30), chunk=1) == 1
    assert await credit.forget_request_keys(timedelta(days=30)) == 0
    async with credit.ledger.transaction() as tx:
        assert await tx.claim_request(keyed("young").key, clock()) is not None  # still replayed
    # The forgotten key again: a new request, but its posting key refuses a second booking.
    with pytest.raises(IdempotencyConflict):
        await credit.draw_keyed("F1", D("100.00"), keyed("old"))
    assert (await credit.summary("F1")).principal == D("300.00")


def keyed(key: str) -> KeyedRequest:
    return KeyedRequest(
        RequestKey("acme", key, "fp-" + key),
        lambda result: StoredResponse(201, {"posting": result.posting.posting_id}),
        lambda error: StoredResponse(409, {"error": str(error)}),
    )
