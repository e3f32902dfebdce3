"""Idempotency-Key for money-moving requests (IETF httpapi draft; Stripe's semantics).

- missing key -> 400; same key + same body -> the stored response is replayed;
- same key + different body -> 422; same key while the first request is still running -> 409.
Keys are scoped per token. The record is claimed in its own committed transaction before the
operation runs (so a concurrent duplicate sees it), and completed after. If the process dies in
between, nothing is lost: the response is stored in the same transaction as the money movement
(`complete_in`), so either both exist or neither; a claim left behind by a crash before that
commit answers 409 until cleared, and the posting's unique (facility, key) index means a retry
can never book money twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from api.tables import idempotency_record
from ledger.store.port import LedgerStore


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: Any


class KeyInFlight(Exception):
    pass


class KeyReused(Exception):
    pass


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyBook:
    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    async def claim(self, scope: str, key: str, req_hash: str, now: datetime) -> Replay | None:
        """Claim `key` for a new request; return the stored response for a replay.

        Raises KeyReused (different request) or KeyInFlight (the first is still running).
        """
        try:
            async with self.store.transaction() as tx:
                await tx.conn.execute(
                    idempotency_record.insert().values(
                        scope=scope, key=key, request_hash=req_hash, state="in_flight", created_at=now
                    )
                )
            return None
        except IntegrityError:
            pass
        async with self.store.transaction() as tx:
            row = (
                await tx.conn.execute(
                    select(idempotency_record).where(
                        idempotency_record.c.scope == scope, idempotency_record.c.key == key
                    )
                )
            ).first()
        if row is None:  # released between our insert and read: try once more
            return await self.claim(scope, key, req_hash, now)
        if row.request_hash != req_hash:
            raise KeyReused()
        if row.state != "done":
            raise KeyInFlight()
        return Replay(row.status_code, json.loads(row.body))

    async def complete(self, scope: str, key: str, status_code: int, body: Any) -> None:
        async with self.store.transaction() as tx:
            await self.complete_in(tx, scope, key, status_code, body)

    @staticmethod
    async def complete_in(tx: Any, scope: str, key: str, status_code: int, body: Any) -> None:
        """Store the response inside the operation's own transaction: both commit or neither."""
        await tx.conn.execute(
            update(idempotency_record)
            .where(idempotency_record.c.scope == scope, idempotency_record.c.key == key)
            .values(state="done", status_code=status_code, body=json.dumps(body))
        )

    async def release(self, scope: str, key: str) -> None:
        """Forget a claim whose request failed unexpectedly (5xx), so the client may retry."""
        async with self.store.transaction() as tx:
            await tx.conn.execute(
                delete(idempotency_record).where(
                    idempotency_record.c.scope == scope, idempotency_record.c.key == key
                )
            )
