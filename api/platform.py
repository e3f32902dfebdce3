"""The services one API process talks to, built by the composition root (api/cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.principal import TokenBook
from ledger.credit import CreditService
from ledger.service import Clock, LedgerService
from ledger.store.port import LedgerStore


@dataclass
class Platform:
    store: LedgerStore
    ledger: LedgerService
    credit: CreditService
    tokens: TokenBook
    clock: Clock
    devices: Any = None  # gateway.registry.DeviceRegistry when the gateway package is wired
    feed_poll_s: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        """Wait for the token re-reads still running, then close the store's connections."""
        await self.tokens.close()
        await self.store.close()
