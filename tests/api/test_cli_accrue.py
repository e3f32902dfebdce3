"""`pledge credit accrue` books every facility's interest through yesterday, once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger.store.engine import create_engine
from ledger.store.sql import SqliteStore
from migrations import migrate
from tests.conftest import FakeClock
from tests.ledger.test_credit_story import world


async def _seed(path: Path, clock: FakeClock) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    _ledger, credit = await world(SqliteStore(engine), clock)
    await credit.draw("F1", Decimal("1000.00"))
    await engine.dispose()


def test_accrue_books_the_days_since_the_drawdown_then_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, clock = tmp_path / "ledger.db", FakeClock()
    asyncio.run(_seed(db, clock))
    monkeypatch.setenv("PLEDGE_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    days = (datetime.now(UTC).date() - clock().date()).days  # the CLI's clock is the real one
    runner = CliRunner()
    first = runner.invoke(app, ["credit", "accrue"])
    assert first.exit_code == 0, first.output
    assert f"interest accrued: 1 facilities, {days} interest postings" in first.output
    again = runner.invoke(app, ["credit", "accrue"])
    assert again.exit_code == 0 and "interest accrued: 0 facilities, 0 interest postings" in again.output
