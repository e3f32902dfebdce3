"""An API process runs the daily interest job from its start until it closes."""

from __future__ import annotations

import asyncio

from ledger.credit import AccrualRun
from tests.api.conftest import make_api


async def test_an_api_process_runs_the_daily_accrual_until_it_closes(store, clock):
    platform = await make_api(store, clock)
    job = platform.start_daily_accrual()
    async with asyncio.timeout(10):
        while not job.completed:  # the catch-up run at start
            await asyncio.sleep(0.01)
    assert job.last == AccrualRun()  # facilities opened today: nothing due yet
    [task] = platform.jobs
    await platform.close()
    assert task.cancelled() and platform.jobs == []
