"""An API process runs the daily jobs (interest, key retention) from its start until it closes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ledger.credit import AccrualRun
from tests.api.conftest import make_api


async def test_an_api_process_runs_the_daily_jobs_until_it_closes(store, clock):
    platform = await make_api(store, clock)
    accrual, keys = platform.start_daily_jobs(accrual=True, key_retention=timedelta(days=30))
    async with asyncio.timeout(10):
        while not (accrual.completed and keys.completed):  # the catch-up runs at start
            await asyncio.sleep(0.01)
    assert (accrual.last, keys.last) == (AccrualRun(), 0)  # opened today, no key yet: nothing due
    tasks = list(platform.jobs)
    await platform.close()
    assert all(t.cancelled() for t in tasks) and len(tasks) == 2 and platform.jobs == []
    assert platform.start_daily_jobs(accrual=False, key_retention=None) == []
