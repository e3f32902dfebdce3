"""The daily interest job: every facility's interest booked once each day is over.

Money operations book the interest due before they move money, but an idle facility's interest
would wait for its next operation: a statement of last month, asked for today, would lack the
month's interest and change once it is booked. `DailyAccrual` runs `CreditService.accrue_all` at
start (catching up whatever was missed while nothing ran) and then a few minutes after every
midnight UTC. Every API process runs one; `accrue_all` is idempotent (the facility's row lock,
`accrued_through`), so the second process of the day finds nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ledger.credit import AccrualRun, CreditService

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=5)  # after midnight UTC: late clocks and the day's last requests settle


def next_run(now: datetime) -> datetime:
    """The next time the job runs after `now` (timezone-aware): midnight UTC + GRACE."""
    midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=now.tzinfo)
    due = midnight + GRACE
    return due if due > now else due + timedelta(days=1)


class DailyAccrual:
    """`run()` until cancelled; `clock` and `sleep` come in (tests pass fakes)."""

    def __init__(
        self,
        credit: CreditService,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        retry_s: float = 60.0,
    ) -> None:
        self.credit, self.clock, self.sleep, self.retry_s = credit, clock, sleep, retry_s
        self.last: AccrualRun | None = None  # the last run that finished
        self.completed = 0

    async def run(self) -> None:
        while True:
            try:
                done = await self.credit.accrue_all()
            except Exception:  # the database away, a facility refusing: try again soon, never die
                log.exception("daily interest accrual failed; retrying in %.0f s", self.retry_s)
                await self.sleep(self.retry_s)
                continue
            self.last, self.completed = done, self.completed + 1
            if done.facilities:
                log.info("interest accrued: %d facilities, %d postings", done.facilities, done.postings)
            now = self.clock()
            await self.sleep(max(0.0, (next_run(now) - now).total_seconds()))
