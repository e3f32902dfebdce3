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
from typing import Literal

from sqlalchemy import select

from api.tables import api_token
from ledger.core.errors import InvalidReference
from ledger.store.port import LedgerStore

log = logging.getLogger("pledge.api")

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
        # seen together do not come due together; and callers of a token not cached wait for
        # one lookup instead of each running its own. Before this, every 10 s 64 busy clients
        # re-read 100 tokens at once: a ~200 ms stall, the money requests' p99 (docs/scaling.md).
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[Principal | None, float, float]] = {}  # (principal, due, expires)
        self._lookups: dict[str, asyncio.Task[Principal | None]] = {}
        self.lookups = 0  # database lookups run (tests, diagnostics)

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
        while self._lookups:
            await asyncio.gather(*self._lookups.values(), return_exceptions=True)

    def _start_lookup(self, h: str) -> asyncio.Task[Principal | None]:
        task = self._lookups[h] = asyncio.get_running_loop().create_task(self._lookup(h))
        task.add_done_callback(lambda done: self._forget(h, done))
        return task

    def _forget(self, h: str, done: asyncio.Task[Principal | None]) -> None:
        if self._lookups.get(h) is done:
            del self._lookups[h]
        if not done.cancelled() and (e := done.exception()) is not None:
            # a waiting caller gets it raised; a background re-read has no caller: say it here
            log.warning("bearer token lookup failed: %r", e)

    async def _lookup(self, h: str) -> Principal | None:
        self.lookups += 1
        read_at = self.monotonic()
        async with self.store.transaction() as tx:
            row = (await tx.conn.execute(select(api_token).where(api_token.c.token_hash == h))).first()
        principal = None if row is None or row.revoked else Principal(h[:12], row.role, row.facility_id)
        if len(self._cache) > 100_000:
            self._cache.clear()
        ttl = self.cache_ttl_s
        self._cache[h] = (principal, read_at + ttl * random.uniform(0.5, 0.75), read_at + ttl)
        return principal
