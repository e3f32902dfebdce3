"""Deduplication state: the event keys already committed, kept for a bounded time.

MQTT QoS 1 redelivers: after a gateway crash (everything in flight), after a reconnect, and
across a shared subscription. Every observation carries an `event_key` (native:
"{device}:{seq}"; vendor formats: the vendor's event id or a content hash); a key committed
once is recorded here, in the same transaction as its evidence, and a later message with the
same key has no second effect.

Why pruning is safe, and why it keeps ingest flat as history grows:

* Native messages: a `seq` above the device's `device_state.last_seq` is new by construction
  (ingest does not even look its key up). A `seq` at or below it is a duplicate when its key is
  here; otherwise it is new if its time is within the *horizon* (retention minus the allowed
  clock skew: had it been committed, its key would still be here) - a message reordered by a
  shared subscription - and refused as stale_sequence when older. So a pruned key never lets
  an old message through twice: the replay is older than the horizon by construction.
* Vendor keys are looked up; brokers redeliver within the session expiry (an hour by default,
  docs/mqtt.md) and Mosquitto's queue, so a retention of days covers every redelivery.
* Rows older than the retention are deleted by `prune`, in chunks, by the `seen_at` index. The
  table therefore holds about (event rate x retention) rows whatever the length of history,
  and its index lookups and inserts cost the same after a million events as after ten.

`digest` (native only) is the sha256 of the message's bytes: the same seq sent again with
different content is not a redelivery but a device that reused a sequence number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, true, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.bulk import insert_new
from gateway.tables import seen_event

__all__ = ["PRUNE_CHUNK", "claim", "prune", "seen"]

PRUNE_CHUNK = 10_000
_LOOKUP_CHUNK = 500  # keys per IN list (SQLite)

# PostgreSQL: one primary-key probe per key, whatever the statistics say. The plain
# `site_id = :s AND event_key IN (...)` was planned, on a table grown faster than autovacuum
# analyses it (a new deployment, a burst), as a bitmap scan of the whole site - every key the
# site ever recorded - filtered by the list: two gateways on a shared subscription, which look
# up the keys their partner's commits put below the high-water mark, slowed down as the table
# grew (docs/scaling.md). A LATERAL subquery with LIMIT 1 cannot be flattened into a join the
# planner might hash: it stays a nested loop of index lookups on (site_id, event_key).
_keys = func.unnest(bindparam("keys", type_=ARRAY(seen_event.c.event_key.type))).table_valued(
    "event_key").render_derived(name="k")
_recorded = (select(seen_event.c.digest)
             .where(seen_event.c.site_id == bindparam("site"), seen_event.c.event_key == _keys.c.event_key)
             .limit(1).lateral("s"))
_PG_SEEN = select(_keys.c.event_key, _recorded.c.digest).select_from(_keys.join(_recorded, true()))


async def seen(conn: AsyncConnection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """Which of the (site_id, event_key) pairs are already recorded, with their digests."""
    by_site: dict[str, list[str]] = {}
    for site_id, key in keys:
        by_site.setdefault(site_id, []).append(key)
    found: dict[tuple[str, str], str | None] = {}
    for site_id, site_keys in by_site.items():
        unique = sorted(set(site_keys))
        if conn.dialect.name == "postgresql":
            for r in await conn.execute(_PG_SEEN, {"keys": unique, "site": site_id}):
                found[(site_id, r.event_key)] = r.digest
            continue
        for i in range(0, len(unique), _LOOKUP_CHUNK):
            q = select(seen_event.c.event_key, seen_event.c.digest).where(
                seen_event.c.site_id == site_id,
                seen_event.c.event_key.in_(unique[i : i + _LOOKUP_CHUNK]),
            )
            for r in await conn.execute(q):
                found[(site_id, r.event_key)] = r.digest
    return found


async def claim(
    conn: AsyncConnection, rows: Sequence[tuple[str, str, str | None]], now: datetime
) -> set[tuple[str, str]]:
    """Record (site_id, event_key, digest) rows as committed at `now`, skipping keys already
    recorded; returns the (site_id, event_key) pairs this call recorded.

    `INSERT ... ON CONFLICT DO NOTHING` (gateway/bulk.py): on PostgreSQL, a key another
    transaction inserted and has not committed yet makes this one wait for it, then skip the key
    if it committed. So two gateways that read the same unseen key can never both claim it; the
    loser learns it here, without any lock held beforehand. Keys are inserted in sorted order,
    so that two batches claiming overlapping keys wait for each other in one direction only (no
    deadlock)."""
    ordered = sorted(rows, key=lambda r: (r[0], r[1]))
    inserted = await insert_new(
        conn, seen_event,
        [{"site_id": s, "event_key": k, "digest": d, "seen_at": now} for s, k, d in ordered])
    return {(site_id, key) for site_id, key in inserted}


async def prune(conn: AsyncConnection, cutoff: datetime, limit: int = PRUNE_CHUNK) -> int:
    """Delete up to `limit` keys recorded before `cutoff`; returns how many went."""
    oldest = (
        select(seen_event.c.site_id, seen_event.c.event_key)
        .where(seen_event.c.seen_at < cutoff)
        .limit(limit)
    )
    result = await conn.execute(
        delete(seen_event).where(tuple_(seen_event.c.site_id, seen_event.c.event_key).in_(oldest))
    )
    return int(result.rowcount or 0)
