"""Work that runs once a day in every API process: interest accrual, forgetting old
Idempotency-Keys.

Money operations book the interest due before they move money, but an idle facility's interest
would wait for its next operation: a statement of last month, asked for today, would lack the
month's interest and change once it is booked. And every money request leaves its key's stored
answer behind: kept forever, that table only grows. A `DailyJob` runs its work at start
(catching up whatever was missed while nothing ran) and then a few minutes after every midnight
UTC. Every API process runs them; the work is idempotent (`CreditService.accrue_all` locks each
facility and checks `accrued_through`; forgetting keys deletes what is still there), so the
second process of the day finds nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
GRACE = timedelta(minutes=5)  # after midnight UTC: late clocks and the day's last requests settle


def next_run(now: datetime) -> datetime:
    """The next time a daily job runs after `now` (timezone-aware): midnight UTC + GRACE."""
    midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=now.tzinfo)
    due = midnight + GRACE
    return due if due > now else due + timedelta(days=1)


class DailyJob(Generic[T]):
    """`run()` until cancelled: `work` now, then daily at `next_run`; a failure is logged and
    retried after `retry_s`, never fatal. `clock` and `sleep` come in (tests pass fakes)."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[T]],
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        retry_s: float = 60.0,
    ) -> None:
        self.name, self.work, self.clock, self.sleep, self.retry_s = name, work, clock, sleep, retry_s
        self.last: T | None = None  # what the last run that finished returned
        self.completed = 0

    async def run(self) -> None:
        while True:
            try:
                done = await self.work()
            except Exception:  # the database away, a facility refusing: try again soon
                log.exception("daily job %s failed; retrying in %.0f s", self.name, self.retry_s)
                await self.sleep(self.retry_s)
                continue
            self.last, self.completed = done, self.completed + 1
            log.info("daily job %s: %s", self.name, done)
            now = self.clock()
            await self.sleep(max(0.0, (next_run(now) - now).total_seconds()))
