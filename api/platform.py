"""The services one API process talks to, built by the composition root (api/cli.py)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from api.principal import TokenBook
from ledger.credit import CreditService
from ledger.daily_accrual import DailyAccrual
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

    def start_daily_accrual(self) -> DailyAccrual:
        """Run the daily interest job (ledger/daily_accrual.py) until `close`."""
        job = DailyAccrual(self.credit, self.clock)
        self.jobs.append(asyncio.create_task(job.run(), name="daily-accrual"))
        return job

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
