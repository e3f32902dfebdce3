"""The dead-letter store: every message the gateway refuses, kept with its reason and raw bytes.

A dead letter changes nothing in the ledger; it is written in the same transaction as the batch
that refused it (or alone, when the batch had to be retried message by message), and its MQTT
message is acknowledged only after that commit, like any other. `pledge deadletters` and
`GET /v1/deadletters` read them; `pledge_gateway_dead_letters_total{reason}` counts them.

Raw bytes are kept up to `MAX_PAYLOAD_BYTES` (256 KiB); a larger payload (refused as
payload_too_large) keeps its first 256 KiB and its full `size`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import DecodeError
from gateway.formats import MAX_PAYLOAD_BYTES
from gateway.tables import dead_letter
from ledger.store.port import LedgerStore

__all__ = ["MAX_DETAIL_CHARS", "DeadLetter", "DeadLetterBook", "describe", "insert_dead_letters"]

MAX_DETAIL_CHARS = 4000
MAX_TOPIC_CHARS = 512


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message. `raw` holds at most MAX_PAYLOAD_BYTES; `size` is the full size."""

    at: datetime
    reason: str
    topic: str
    raw: bytes
    detail: str
    size: int
    site_id: str | None = None
    device_id: str | None = None
    dead_letter_id: int | None = None

    @classmethod
    def of(cls, at: datetime, reason: str, topic: str, raw: bytes, detail: str,
           site_id: str | None = None, device_id: str | None = None) -> DeadLetter:
        """A new dead letter, with the raw bytes truncated and the text made storable."""
        return cls(at, reason, _clean(topic, MAX_TOPIC_CHARS), bytes(raw[:MAX_PAYLOAD_BYTES]),
                   _clean(detail, MAX_DETAIL_CHARS), len(raw), site_id, device_id)

    def values(self) -> dict[str, Any]:
        return {"at": self.at, "reason": self.reason, "topic": self.topic, "raw": self.raw,
                "size": self.size, "detail": self.detail, "site_id": self.site_id,
                "device_id": self.device_id}


def describe(error: BaseException) -> str:
    """A dead letter's detail: the error's message and, for a DecodeError, its facts."""
    if isinstance(error, DecodeError):
        facts = {k: v for k, v in error.facts.items() if k != "device_id"}
        extra = f" {json.dumps(facts, default=str, sort_keys=True)}" if facts else ""
        return f"{error.message}{extra}"
    return f"{type(error).__name__}: {error}"


def _clean(text: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; a hostile payload's text can reach the detail.
    return text.replace("\x00", "\\x00")[:limit]


async def insert_dead_letters(conn: AsyncConnection, letters: Sequence[DeadLetter]) -> None:
    if letters:
        await conn.execute(dead_letter.insert(), [d.values() for d in letters])


def _from_row(r: Any) -> DeadLetter:
    return DeadLetter(r.at, r.reason, r.topic, bytes(r.raw), r.detail, r.size, r.site_id,
                      r.device_id, r.dead_letter_id)


class DeadLetterBook:
    """Reads the dead-letter store (writes happen inside ingest's transactions)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    async def list(
        self,
        reason: str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        """Oldest first, keyset-paginated by id (`after` = the last id seen)."""
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be 1..10000")
        q = select(dead_letter).order_by(dead_letter.c.dead_letter_id).limit(limit)
        if reason is not None:
            q = q.where(dead_letter.c.reason == reason)
        if since is not None:
            q = q.where(dead_letter.c.at >= since)
        if after is not None:
            q = q.where(dead_letter.c.dead_letter_id > after)
        async with self.store.transaction() as tx:
            return [_from_row(r) for r in await tx.conn.execute(q)]

    async def counts(self, since: datetime | None = None) -> dict[str, int]:
        """How many dead letters per reason (since a time, if given)."""
        q = select(dead_letter.c.reason, func.count()).group_by(dead_letter.c.reason)
        if since is not None:
            q = q.where(dead_letter.c.at >= since)
        async with self.store.transaction() as tx:
            return {r[0]: int(r[1]) for r in await tx.conn.execute(q)}
