"""`pledge ledger verify --facility ID` prints OK, or the first broken entry after an edit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger.service import LedgerService
from ledger.store.engine import create_engine
from ledger.store.sql import SqliteStore
from migrations import migrate
from tests.conftest import FakeClock
from tests.ledger.world import build, lot


async def _seed(path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    svc = LedgerService(SqliteStore(engine), FakeClock())
    await build(svc)
    await svc.register_lots([lot(n, pledge=True) for n in range(1, 4)])
    await engine.dispose()


def test_verify_reports_ok_then_the_edited_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "ledger.db"
    asyncio.run(_seed(db))
    monkeypatch.setenv("PLEDGE_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    runner = CliRunner()
    ok = runner.invoke(app, ["ledger", "verify", "--facility", "F1"])
    assert ok.exit_code == 0 and "OK" in ok.output
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE journal_entry SET quantity = '2500' WHERE facility_id = 'F1' AND seq = 2")
    broken = runner.invoke(app, ["ledger", "verify", "--facility", "F1"])
    assert broken.exit_code == 1
    assert "seq=2" in broken.output and "edited" in broken.output
    unknown = runner.invoke(app, ["ledger", "verify", "--facility", "NOPE"])
    assert unknown.exit_code == 2 and "unknown facility" in unknown.output
