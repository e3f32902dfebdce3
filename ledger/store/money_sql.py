"""The money desk on SQLAlchemy (both databases): drawdowns and repayments statement by statement.

`SqlMoneyTx` implements `MoneyTx` with the credit statements of `SqlTx` (ledger/store/credit_sql.py),
and `SerialMoneyBatch` runs a batch of the money desk (ledger/money_desk.py) through it, request
after request, in one transaction: SQLite's money batches. PostgreSQL's batches use
`PgMoneyBatch` (ledger/store/money_pg.py), four round trips per batch;
tests/ledger/test_money_desk.py and test_money_batch.py hold both to one contract.

Idempotency keys are claimed inside the transaction that moves the money, so the claim, the
postings and the stored answer commit together or not at all: a crash leaves no claim behind.
On PostgreSQL a transaction-scoped advisory lock on the key tells a duplicate sent while the
first is still running (409) from one sent after it (the stored answer is replayed). SQLite runs
one writer at a time (BEGIN IMMEDIATE), so there a duplicate waits and then gets the replay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger.store import tables as t
from ledger.store.port import (
    MoneyAsk,
    MoneyBatchTx,
    MoneyState,
    MoneyTx,
    MoneyWrites,
    Opened,
    RequestKey,
    RequestKeyInFlight,
    RequestKeyReused,
    StoredResponse,
)


def advisory_key(request: RequestKey) -> int:
    """A signed 64-bit lock id for (scope, key): what pg_try_advisory_xact_lock takes."""
    digest = hashlib.sha256(f"{request.scope}\0{request.key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def stored_outcome(
    request: RequestKey, request_hash: str, state: str, status_code: int | None, body: str | None
) -> StoredResponse:
    """The answer of a key found already used: its stored response, or why there is none."""
    if request_hash != request.fingerprint:
        raise RequestKeyReused()
    if state != "done" or body is None or status_code is None:  # committed by an older release
        raise RequestKeyInFlight()  # of the API, which claimed keys on their own: still held
    return StoredResponse(status_code, json.loads(body))


async def claim_request(tx: Any, request: RequestKey, now: datetime) -> StoredResponse | None:
    """Claim `request`'s key inside `tx` (an SqlTx); None when claimed, else the stored answer."""
    conn = tx.conn
    if tx.dialect == "postgresql":
        got = (await conn.execute(select(func.pg_try_advisory_xact_lock(advisory_key(request))))).scalar()
        if not got:
            raise RequestKeyInFlight()
    ins = (postgresql.insert if tx.dialect == "postgresql" else sqlite.insert)(t.idempotency_record)
    result = await conn.execute(
        ins.values(
            scope=request.scope,
            key=request.key,
            request_hash=request.fingerprint,
            state="in_flight",
            created_at=now,
        ).on_conflict_do_nothing()
    )
    if result.rowcount == 1:
        return None
    row = (
        await conn.execute(
            select(t.idempotency_record).where(
                t.idempotency_record.c.scope == request.scope, t.idempotency_record.c.key == request.key
            )
        )
    ).first()
    if row is None:  # pragma: no cover - the conflicting row cannot vanish under our lock
        raise RequestKeyInFlight()
    return stored_outcome(request, row.request_hash, row.state, row.status_code, row.body)


async def forget_requests(tx: Any, before: datetime, limit: int) -> int:
    """Delete up to `limit` answered keys created before `before`, oldest first; how many.

    Only answered ones: a key's claim and answer commit together, but a claim is never dropped
    under a request. A key used again after this is a new request; its posting key (unique per
    facility) still refuses to book money twice: IdempotencyConflict, a 409."""
    rec = t.idempotency_record
    old = (
        await tx.conn.execute(
            select(rec.c.scope, rec.c.key)
            .where(rec.c.state == "done", rec.c.created_at < before)
            .order_by(rec.c.created_at)
            .limit(limit)
        )
    ).all()
    if old:
        await tx.conn.execute(delete(rec).where(tuple_(rec.c.scope, rec.c.key).in_([tuple(r) for r in old])))
    return len(old)


async def store_response(tx: Any, request: RequestKey, response: StoredResponse) -> None:
    await tx.conn.execute(
        update(t.idempotency_record)
        .where(t.idempotency_record.c.scope == request.scope, t.idempotency_record.c.key == request.key)
        .values(state="done", status_code=response.status_code, body=response.json_bytes().decode())
    )


class SqlMoneyTx(MoneyTx):
    """`MoneyTx` over an `SqlTx`: one statement per step."""

    def __init__(self, tx: Any) -> None:
        self.tx = tx

    async def open(
        self, facility_id: str, aged_before: datetime, request: RequestKey | None, now: datetime
    ) -> Opened:
        if request is not None:
            replay = await claim_request(self.tx, request, now)
            if replay is not None:
                return Opened(replay, None)
        st = await self.tx.lock_credit_state(facility_id)
        if st is None:
            return Opened(None, None)
        balances = (await self.tx.balances([facility_id]))[facility_id]
        positions = await self.tx.positions([facility_id])
        aged = await self.tx.aged_lots({facility_id: aged_before})
        return Opened(None, MoneyState(st, balances, positions, aged))

    async def book(
        self, writes: MoneyWrites, request: RequestKey | None, response: StoredResponse | None
    ) -> None:
        await self.tx.insert_postings(writes.postings, writes.first_seq)
        if writes.balances:
            await self.tx.put_balances(writes.facility_id, writes.balances)
        await self.tx.update_credit_states([{"facility_id": writes.facility_id, **writes.state}])
        await self.tx.insert_credit_events(writes.events)
        if request is not None and response is not None:
            await store_response(self.tx, request, response)

    async def respond(self, request: RequestKey, response: StoredResponse) -> None:
        await store_response(self.tx, request, response)


class SerialMoneyBatch(MoneyBatchTx):
    """`MoneyBatchTx` over a `MoneyTx`: the batch's requests one after another, in one transaction
    (SQLite, where one writer at a time leaves nothing to gain from fewer round trips)."""

    def __init__(self, tx: MoneyTx) -> None:
        self.tx = tx

    async def open(
        self, asks: Sequence[MoneyAsk], now: datetime
    ) -> list[Opened | RequestKeyInFlight | RequestKeyReused]:
        out: list[Opened | RequestKeyInFlight | RequestKeyReused] = []
        seen: dict[str, MoneyState | None] = {}
        for ask in asks:
            try:
                opened = await self.tx.open(ask.facility_id, ask.aged_before, ask.request, now)
            except (RequestKeyInFlight, RequestKeyReused) as e:
                out.append(e)
                continue
            if opened.replay is None:  # asks of one facility share the state read first
                opened = Opened(None, seen.setdefault(ask.facility_id, opened.money))
            out.append(opened)
        return out

    async def book(
        self, writes: Sequence[MoneyWrites], answers: Sequence[tuple[RequestKey, StoredResponse]]
    ) -> None:
        for w in writes:
            await self.tx.book(w, None, None)
        for request, response in answers:
            await self.tx.respond(request, response)


__all__ = [
    "SerialMoneyBatch",
    "SqlMoneyTx",
    "advisory_key",
    "claim_request",
    "store_response",
    "stored_outcome",
]
