"""Who is calling: bearer tokens with roles, stored hashed (sha256 of the secret).

Roles: `borrower` (its own facility only; another facility answers 404, not 403, so a borrower
cannot even learn which ids exist), `collateral_manager` (every facility; ledger queries,
prices, devices, dead letters), `admin` (everything, including creating facilities).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select

from api.tables import api_token
from ledger.core.errors import InvalidReference
from ledger.store.port import LedgerStore

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

    def __init__(self, store: LedgerStore, cache_ttl_s: float = 10.0) -> None:
        self.store = store
        # Verified tokens are cached briefly (monotonic seconds): a money request then costs no
        # token lookup. A revocation therefore takes effect within `cache_ttl_s`.
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[Principal, float]] = {}

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
        h = token_hash(secret)
        hit = self._cache.get(h)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        async with self.store.transaction() as tx:
            row = (await tx.conn.execute(select(api_token).where(api_token.c.token_hash == h))).first()
        if row is None or row.revoked:
            return None
        principal = Principal(h[:12], row.role, row.facility_id)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[h] = (principal, time.monotonic() + self.cache_ttl_s)
        return principal
