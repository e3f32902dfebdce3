"""ledger.store.checkpoint: the benches checkpoint before measuring, or say why they could not."""

from __future__ import annotations

import asyncpg
import pytest

from ledger.store.checkpoint import checkpoint
from tests.conftest import PG_URL, service_unavailable

DSN = PG_URL.replace("postgresql+asyncpg", "postgresql")


async def _connect(**kw: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(DSN, **kw)
    except (OSError, asyncpg.PostgresError) as e:
        service_unavailable("PostgreSQL", e)
        raise


async def test_checkpoint_as_a_privileged_role():
    conn = await _connect()
    try:
        if not await conn.fetchval(
            "SELECT rolsuper OR pg_has_role(current_user, 'pg_checkpoint', 'member') FROM pg_roles "
            "WHERE rolname = current_user"
        ):
            pytest.skip("the test role may not CHECKPOINT")
        assert (await checkpoint(conn)).startswith("CHECKPOINT before measuring: ")
    finally:
        await conn.close()


async def test_checkpoint_refused_is_said_not_raised():
    conn = await _connect()
    try:
        if not await conn.fetchval(
            "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
        ):
            pytest.skip("the test role may not create the unprivileged role this needs")
        await conn.execute(
            "DO $$ BEGIN CREATE ROLE pledge_test_no_checkpoint LOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        await conn.execute("SET ROLE pledge_test_no_checkpoint")
        assert "not permitted" in await checkpoint(conn)
    finally:
        await conn.close()
