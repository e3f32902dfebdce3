"""Engines for the two supported databases, from a SQLAlchemy URL.

- PostgreSQL: `postgresql+asyncpg://user@host:port/db`. An optional schema puts every table in
  that schema (tests run each in its own) through the connection's search_path.
- SQLite: `sqlite+aiosqlite:///path.db`. WAL journal, foreign keys on, and BEGIN IMMEDIATE for
  every transaction, so two writers queue instead of failing to upgrade a read lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ledger.core.errors import InvalidReference


def create_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> AsyncEngine:
    """An async engine for `url`; refuses drivers other than asyncpg and aiosqlite."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql+asyncpg":
        args: dict[str, Any] = {}
        if schema:
            args["server_settings"] = {"search_path": schema}
        # No pool_pre_ping: it costs a round trip per transaction; a connection found dead is
        # invalidated by SQLAlchemy on its first error and the request fails cleanly instead.
        return create_async_engine(
            url, connect_args=args, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800
        )
    if parsed.drivername == "sqlite+aiosqlite":
        engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    raise InvalidReference(
        f"unsupported database URL driver {parsed.drivername!r}: "
        "use postgresql+asyncpg://... or sqlite+aiosqlite:///..."
    )


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling defers BEGIN and never issues BEGIN IMMEDIATE; take it
    # over (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL").
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
