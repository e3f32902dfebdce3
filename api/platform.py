"""The services one API process talks to, built by the composition root (api/cli.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from api.principal import TokenBook
from ledger.credit import CreditService
from ledger.daily_job import DailyJob
from ledger.service import Clock, LedgerService
from ledger.store.port import LedgerStore


@dataclass
class Platform:
    store: LedgerStore
    ledger: LedgerService
    credit: CreditService
    tokens: TokenBook
    clock: Clock
    devices: Any = None  # gateway.registry.DeviceRegistry when the gateway package is wired
    feed_poll_s: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    jobs: list[asyncio.Task[None]] = field(default_factory=list)

    def start_daily_jobs(self, accrual: bool, key_retention: timedelta | None) -> list[DailyJob[Any]]:
        """Run, until `close`, the daily interest accrual (if `accrual`) and the forgetting of
        Idempotency-Keys older than `key_retention` (None: kept forever); ledger/daily_job.py."""
        jobs: list[DailyJob[Any]] = []
        if accrual:
            jobs.append(DailyJob("interest accrual", self.credit.accrue_all, self.clock))
        if key_retention is not None:
            forget = functools.partial(self.credit.forget_request_keys, key_retention)
            jobs.append(DailyJob("idempotency key retention", forget, self.clock))
        for job in jobs:
            self.jobs.append(asyncio.create_task(job.run(), name=job.name))
        return jobs

    async def close(self) -> None:
        """Stop the jobs, wait for the token re-reads still running, close the store's connections."""
        for task in self.jobs:
            task.cancel()
        for task in self.jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.jobs.clear()
        await self.tokens.close()
        await self.store.close()
