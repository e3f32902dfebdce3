"""Bulk inserts: what goes in comes back out, on SQLite and on PostgreSQL (one statement there)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from gateway.bulk import _copied, insert_new, insert_rows
from gateway.tables import camera_count, seen_event, tag_read

AT = datetime(2024, 3, 1, 10, 0, 0, 120_000, tzinfo=UTC)


def read(n: int, **over: Any) -> dict[str, Any]:
    row = {"site_id": "SH1", "zone_id": "SH1-A" if n % 2 else None, "device_id": "zone-1", "at": AT,
           "epc": f"{n:024X}", "event_key": f"zone-1:{n}", "antenna": n if n % 3 else None,
           "rssi_dbm": Decimal(f"-{n}.25") if n % 4 else None, "direction": "in" if n == 1 else None,
           "gate": n % 2 == 0, "passage_id": None}
    row.update(over)
    return row


async def test_rows_come_back_exactly_as_inserted(store: Any) -> None:
    rows = [read(n) for n in range(1, 9)]
    async with store.transaction() as tx:
        await insert_rows(tx.conn, tag_read, rows)
        await insert_rows(tx.conn, tag_read, [])
        await insert_rows(tx.conn, camera_count, [{  # a JSON column: the general path
            "site_id": "SH1", "zone_id": None, "device_id": "cam-1", "at": AT, "event_key": "cam-1:1",
            "label": "coil", "count": 3, "confidence": Decimal("0.9"), "epcs": ["A1", "B2"]}])
    async with store.transaction() as tx:
        stored = [dict(r._mapping) for r in await tx.conn.execute(
            select(tag_read).order_by(tag_read.c.read_id))]
        [camera] = await tx.conn.execute(select(camera_count))
    assert [{k: v for k, v in r.items() if k != "read_id"} for r in stored] == rows
    assert camera.epcs == ["A1", "B2"]


async def test_column_types_still_refuse_what_they_always_refused(store: Any) -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        async with store.transaction() as tx:
            await insert_rows(tx.conn, tag_read, [read(1), read(2, at=datetime(2024, 3, 1))])


async def test_insert_new_skips_known_keys_and_says_which_it_inserted(store: Any) -> None:
    def key(k: str) -> dict[str, Any]:
        return {"site_id": "SH1", "event_key": k, "digest": None, "seen_at": AT}

    async with store.transaction() as tx:
        first = await insert_new(tx.conn, seen_event, [key("a"), key("b")])
    async with store.transaction() as tx:
        second = await insert_new(tx.conn, seen_event, [key("b"), key("c")])
        nothing = await insert_new(tx.conn, seen_event, [])
    assert first == {("SH1", "a"), ("SH1", "b")}
    assert second == {("SH1", "c")}
    assert nothing == set()


async def test_copy_inside_the_transaction_and_rolled_back_with_it(pg_store: Any) -> None:
    """On PostgreSQL plain inserts go by binary COPY on the transaction's own connection once
    the transaction has begun on the server, and by the unnest INSERT before; either way they
    are part of the transaction."""
    rows = [read(n) for n in range(1, 6)]
    async with pg_store.transaction() as tx:
        assert not await _copied(tx.conn, tag_read, list(rows[0]), rows)  # nothing begun yet
        await tx.conn.execute(select(1))
        assert await _copied(tx.conn, tag_read, list(rows[0]), rows)
    async with pg_store.transaction() as tx:
        stored = [dict(r._mapping) for r in await tx.conn.execute(
            select(tag_read).order_by(tag_read.c.read_id))]
    assert [{k: v for k, v in r.items() if k != "read_id"} for r in stored] == rows

    class Undo(Exception):
        pass

    with pytest.raises(Undo):
        async with pg_store.transaction() as tx:
            await tx.conn.execute(select(1))
            await insert_rows(tx.conn, tag_read, [read(7), read(8)])
            raise Undo
    with pytest.raises(Undo):
        async with pg_store.transaction() as tx:
            await insert_rows(tx.conn, tag_read, [read(9)])  # first statement: the INSERT path
            raise Undo
    async with pg_store.transaction() as tx:
        assert len(list(await tx.conn.execute(select(tag_read.c.read_id)))) == 5


async def test_copy_refuses_what_postgresql_cannot_store(pg_store: Any) -> None:
    with pytest.raises(Exception, match=r"0x00|NUL|null character"):
        async with pg_store.transaction() as tx:
            await tx.conn.execute(select(1))
            await insert_rows(tx.conn, tag_read, [read(1, epc="AB\x00CD")])
    with pytest.raises(Exception, match="timezone-aware"):
        async with pg_store.transaction() as tx:
            await tx.conn.execute(select(1))
            await insert_rows(tx.conn, tag_read, [read(2, at=datetime(2024, 3, 1))])
