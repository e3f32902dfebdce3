"""The alembic chain builds exactly the tables the code declares (no drift between them)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import api.tables
import gateway.tables
from ledger.store.engine import create_engine
from ledger.store.tables import metadata
from migrations import migrate


async def test_migrations_at_head_match_the_declared_tables(tmp_path: Path) -> None:
    assert api.tables and gateway.tables  # both register their tables on the shared metadata
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    await migrate(engine)
    await migrate(engine)  # idempotent
    async with engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    await engine.dispose()
    assert diff == []
