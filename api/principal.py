"""Who is calling: bearer tokens with roles, stored hashed (sha256 of the secret).

Roles: `borrower` (its own facility only; another facility answers 404, not 403, so a borrower
cannot even learn which ids exist), `collateral_manager` (every facility; ledger queries,
prices, devices, dead letters), `admin` (everything, including creating facilities).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from api.tables import api_token
from ledger.core.errors import InvalidReference
from ledger.store.port import LedgerStore

log = logging.getLogger("pledge.api")
_READ_AT_ONCE = 500  # tokens per lookup query

Role = Literal["borrower", "collateral_manager", "admin"]
ROLES: tuple[Role, ...] = ("borrower", "collateral_manager", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str  # first 12 hex chars of the hash: safe to log, scopes idempotency keys
    role: Role
    facility_id: str | None

    def may_see(self, facility_id: str) -> bool:
        return self.role != "borrower" or self.facility_id == facility_id


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenBook:
    """Creates and checks bearer tokens in the platform's database."""

    def __init__(
        self, store: LedgerStore, cache_ttl_s: float = 10.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.monotonic = monotonic
        # Verified tokens are cached briefly (monotonic seconds): a money request then costs no
        # token lookup. A revocation takes effect within `cache_ttl_s`: an entry is served at
        # most that long after it was read. From a random 50-75 % of its life on, a request
        # that uses it starts a re-read in the background (one per token, `_lookups`), so a
        # token in use is re-read before it expires and no request waits for it; tokens first
        # seen together do not come due together; and the tokens wanted at one moment, by any
        # number of callers, are read in one query (`_read`). Before this, every 10 s 64 busy
        # clients each re-read one of 100 tokens, all at once (~1.4 ms of CPU per lookup): a
        # ~200 ms stall, the money requests' p99 (docs/scaling.md).
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[Principal | None, float, float]] = {}  # (principal, due, expires)
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}  # being read, by hash
        self._wanted: list[str] = []  # to read in the next query
        self._reader: asyncio.Task[None] | None = None
        self.lookups = 0  # tokens read from the database, and in how many queries (tests, diagnostics)
        self.reads = 0

    async def create(self, role: str, facility_id: str | None, label: str, now: datetime) -> str:
        """A new token's secret (shown once; only its hash is stored)."""
        if role not in ROLES:
            raise InvalidReference(f"role must be one of {', '.join(ROLES)}")
        if role == "borrower" and not facility_id:
            raise InvalidReference("a borrower token needs --facility")
        secret = "plg_" + secrets.token_urlsafe(32)
        async with self.store.transaction() as tx:
            if facility_id is not None and not await tx.get_facilities([facility_id]):
                from ledger.core.errors import UnknownFacility

                raise UnknownFacility(facility_id)
            await tx.conn.execute(
                api_token.insert().values(
                    token_hash=token_hash(secret),
                    role=role,
                    facility_id=facility_id,
                    label=label,
                    created_at=now,
                    revoked=False,
                )
            )
        return secret

    async def authenticate(self, secret: str) -> Principal | None:
        """The token's principal; None for an unknown or revoked token (also cached: a secret
        that is not a token now never becomes one)."""
        h = token_hash(secret)
        hit = self._cache.get(h)
        if hit is not None:
            principal, due, expires = hit
            now = self.monotonic()
            if now < expires:
                if now >= due and h not in self._lookups:
                    self._start_lookup(h)
                return principal
        lookup = self._lookups.get(h) or self._start_lookup(h)
        # shielded: a caller that goes away (its client hung up) does not cancel the lookup
        return await asyncio.shield(lookup)

    async def close(self) -> None:
        """Wait for the lookups still running (background re-reads), before the store closes."""
        while self._reader is not None and not self._reader.done():
            await asyncio.gather(self._reader, return_exceptions=True)

    def _start_lookup(self, h: str) -> asyncio.Future[Principal | None]:
        """A lookup of `h`, read with the others wanted at this moment (one query for all)."""
        loop = asyncio.get_running_loop()
        future = self._lookups[h] = loop.create_future()
        future.add_done_callback(_retrieved)
        self._wanted.append(h)
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read())
        return future

    async def _read(self) -> None:
        hashes: list[str] = []
        try:
            await asyncio.sleep(0)  # the callers of this moment join the batch
            while self._wanted:
                hashes, self._wanted = self._wanted[:_READ_AT_ONCE], self._wanted[_READ_AT_ONCE:]
                await self._read_some(hashes)
        except BaseException:  # cancelled (shutdown): no caller may wait on a lookup nobody finishes
            for h in hashes + self._wanted:
                future = self._lookups.pop(h, None)
                if future is not None and not future.done():
                    future.cancel()
            self._wanted = []
            raise

    async def _read_some(self, hashes: list[str]) -> None:
        read_at = self.monotonic()
        try:
            self.reads += 1
            self.lookups += len(hashes)
            async with self.store.transaction() as tx:
                rows = (
                    await tx.conn.execute(select(api_token).where(api_token.c.token_hash.in_(hashes)))
                ).all()
        except Exception as e:  # each waiting caller gets it raised; a re-read has none: say it
            log.warning("bearer token lookup of %d tokens failed: %r", len(hashes), e)
            for h in hashes:
                future = self._lookups.pop(h)
                if not future.done():
                    future.set_exception(e)
            return
        found = {row.token_hash: row for row in rows}
        if len(self._cache) > 100_000:
            self._cache.clear()
        ttl = self.cache_ttl_s
        for h in hashes:
            row = found.get(h)
            principal = (
                None if row is None or row.revoked else Principal(h[:12], row.role, row.facility_id)
            )
            self._cache[h] = (principal, read_at + ttl * random.uniform(0.5, 0.75), read_at + ttl)
            future = self._lookups.pop(h)
            if not future.done():
                future.set_result(principal)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a lookup's error as seen (it was logged): a background re-read has no caller."""
    if not future.cancelled():
        future.exception()
