"""A PostgreSQL CHECKPOINT before a measurement: the benches' bulk loads leave it due.

A bulk load (a million postings or tag reads) fills the WAL past `max_wal_size` (1 GB by
default), so PostgreSQL starts a checkpoint, and its writes land on whatever is measured next:
a drawdown bench started right after an ingest bench saw its p99 go from 87-119 ms to 228 ms
(issue 4, stop 9). The benches therefore checkpoint before they measure, and say what it took.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg


async def checkpoint(conn: Any) -> str:
    """Run CHECKPOINT on an asyncpg connection; a line saying how long it took (or that the role
    may not: it needs superuser or pg_checkpoint, PostgreSQL 15+), for the bench's output."""
    t0 = time.perf_counter()
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        return "CHECKPOINT not permitted for this role (superuser or pg_checkpoint): measuring without it"
    return f"CHECKPOINT before measuring: {time.perf_counter() - t0:.1f} s"
