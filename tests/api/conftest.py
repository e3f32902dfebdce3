"""API fixtures: the real app over a real store (SQLite and PostgreSQL), tokens per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest

from api.main import create_app
from api.platform import Platform
from api.principal import TokenBook
from gateway.registry import DeviceRegistry
from ledger.core.pricing import RatePlan
from ledger.credit import CreditService
from ledger.service import LedgerService
from tests.ledger.world import build, facility, lot, price

D = Decimal
PLAN = RatePlan(D("0.03"), D("0.01"), {"A": D("0.01"), "B": D("0.02"), "C": D("0.035")}, D("0.013"))


@dataclass
class Api:
    client: httpx.AsyncClient
    platform: Platform
    tokens: dict[str, str]  # role name -> secret; "borrower" owns F1, "other_borrower" owns F2

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def make_api(store, clock) -> Platform:
    ledger = LedgerService(store, clock)
    credit = CreditService(ledger, clock, PLAN)
    platform = Platform(
        store,
        ledger,
        credit,
        TokenBook(store),
        clock,
        feed_poll_s=0.05,
        devices=DeviceRegistry(store, clock),
    )
    await build(ledger, "F0")
    await credit.open_facility(facility("F1", commitment=D("1000000"), reserves=D(0)), "B")
    await credit.open_facility(facility("F2", borrower_id="B2", commitment=D("500000"), reserves=D(0)), "C")
    for day in range(30, -1, -1):
        await price(ledger, "CU-CATH", str(8000 + (day % 3) * 10), days_ago=day)
    await ledger.register_lots(
        [lot(n, pledge=True, received=True, verified=True, qty="10") for n in range(1, 5)]
    )
    await ledger.register_lots(
        [lot(n, "F2", pledge=True, received=True, verified=True, qty="10") for n in range(5, 7)]
    )
    return platform


@pytest.fixture
async def api(store, clock) -> AsyncIterator[Api]:
    platform = await make_api(store, clock)
    now = clock()
    tokens = {
        "borrower": await platform.tokens.create("borrower", "F1", "acme", now),
        "other_borrower": await platform.tokens.create("borrower", "F2", "other", now),
        "collateral_manager": await platform.tokens.create("collateral_manager", None, "cm", now),
        "admin": await platform.tokens.create("admin", None, "admin", now),
    }
    transport = httpx.ASGITransport(app=create_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, platform, tokens)
    await platform.tokens.close()  # a background token re-read must not outlive the store
