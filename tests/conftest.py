"""Shared fixtures: a migrated ledger store on SQLite and on PostgreSQL (its own schema per test).

PostgreSQL comes from PLEDGE_TEST_DATABASE_URL (default: the local server). With CI=true an
unreachable server fails the run instead of skipping its tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.store.engine import create_engine
from ledger.store.sql import PostgresStore, SqliteStore, SqlLedgerStore
from migrations import migrate

PG_URL = os.environ.get("PLEDGE_TEST_DATABASE_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_unavailable(what: str, err: BaseException) -> None:
    """Fail under CI (the real services are part of the gate), skip on a laptop without them."""
    msg = f"{what} unreachable: {err!r}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: real services are required)")
    pytest.skip(msg)


class FakeClock:
    """A clock tests move by hand: time is an input of the core."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def make_pg_store(schema: str) -> PostgresStore:
    admin = create_engine(PG_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except (OSError, Exception) as e:  # asyncpg raises OSError subclasses and its own errors
        await admin.dispose()
        service_unavailable("PostgreSQL", e)
    await admin.dispose()
    engine = create_engine(PG_URL, schema=schema, pool_size=5)
    await migrate(engine)
    return PostgresStore(engine)


async def drop_pg_schema(schema: str) -> None:
    admin = create_engine(PG_URL)
    async with admin.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await admin.dispose()


async def make_sqlite_store(path: Path) -> SqliteStore:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    return SqliteStore(engine)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlLedgerStore]:
    """Every contract test runs once per adapter."""
    if request.param == "sqlite":
        s: SqlLedgerStore = await make_sqlite_store(tmp_path / "ledger.db")
        yield s
        await s.close()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    s = await make_pg_store(schema)
    try:
        yield s
    finally:
        await s.close()
        await drop_pg_schema(schema)


@pytest.fixture
async def pg_store() -> AsyncIterator[PostgresStore]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    s = await make_pg_store(schema)
    try:
        yield s
    finally:
        await s.close()
        await drop_pg_schema(schema)
