"""gateway/dedup.py against the real stores: `seen` answers exactly, and on PostgreSQL it probes
the primary key whatever the table's statistics say (a table grown faster than autovacuum
analyses it once made the lookup a scan of the whole site)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, insert, text

from gateway import dedup
from gateway.tables import seen_event

AT = datetime(2026, 11, 1, tzinfo=UTC)


async def test_seen_answers_which_keys_are_recorded_with_their_digests(store: Any) -> None:
    rows = [{"site_id": "S1", "event_key": f"d1:{n}", "seen_at": AT,
             "digest": None if n % 3 == 0 else f"h{n}"} for n in range(1, 1201)]
    rows.append({"site_id": "S2", "event_key": "d1:5", "seen_at": AT, "digest": "other-site"})
    async with store.transaction() as tx:
        await tx.conn.execute(insert(seen_event), rows)
    asked = [("S1", f"d1:{n}") for n in range(1190, 1210)]  # 11 recorded, 9 not
    asked += [("S1", "d1:3"), ("S1", "d1:3"), ("S1", "d1:4"), ("S2", "d1:5"), ("S2", "d1:6"), ("S3", "x")]
    async with store.transaction() as tx:
        found = await dedup.seen(tx.conn, asked)
    expected = {("S1", f"d1:{n}"): (None if n % 3 == 0 else f"h{n}") for n in range(1190, 1201)}
    expected |= {("S1", "d1:3"): None, ("S1", "d1:4"): "h4", ("S2", "d1:5"): "other-site"}
    assert found == expected
    async with store.transaction() as tx:  # more keys than one SQLite IN list holds
        assert len(await dedup.seen(tx.conn, [("S1", f"d1:{n}") for n in range(1, 1300)])) == 1200
        assert await dedup.seen(tx.conn, []) == {}


async def test_seen_probes_the_primary_key_on_a_table_without_statistics(pg_store: Any) -> None:
    async with pg_store.transaction() as tx:
        await tx.conn.execute(text(
            "INSERT INTO seen_event (site_id, event_key, seen_at, digest) "
            "SELECT 'S1', 'd' || (i % 8) || ':' || i, now(), md5(i::text) "
            "FROM generate_series(1, 50000) AS i"))
        stats = await tx.conn.scalar(text(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'seen_event' "
            "AND schemaname = current_schema()"))
        assert stats == 0  # not analysed: the planner is guessing
        executed: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            executed.append((statement, parameters))

        event.listen(tx.conn.sync_connection, "before_cursor_execute", capture)
        asked = [("S1", f"d{n % 8}:{n}") for n in range(1, 500, 2)] + [("S1", "nope")]  # a batch's worth
        found = await dedup.seen(tx.conn, asked)
        event.remove(tx.conn.sync_connection, "before_cursor_execute", capture)
        assert set(found) == set(asked[:-1])
        [(statement, parameters)] = executed
        raw: Any = await tx.conn.get_raw_connection()
        plan = "\n".join(r[0] for r in await raw.driver_connection.fetch(f"EXPLAIN {statement}", *parameters))
        assert "Index Scan using seen_event_pkey" in plan, plan
        assert "Bitmap" not in plan and "Seq Scan" not in plan, plan
