"""Hundreds of racing drawdowns on PostgreSQL never lend more than the availability.

The app runs in a real uvicorn server (in this process, on a free port) and the requests come
over TCP from an httpx client with a connection per request, so they really are concurrent:
they interleave in the server, queue on the database pool and meet at the facility's row lock.
Availability is fixed during the race (the clock does not move: no interest; no collateral
moves), so the only thing between two drawdowns is the lock.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import httpx
import pytest
import uvicorn

from api.main import create_app
from tests.api.conftest import make_api

D = Decimal
CENT = D("0.01")
PERIOD = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}


@asynccontextmanager
async def serving(app) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 and a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="off", ws="none", log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Borrower:
    """The F1 borrower over real HTTP."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client, self.auth = client, {"Authorization": f"Bearer {token}"}

    async def money(self, kind: str, amount: Decimal, key: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/facilities/F1/{kind}",
            json={"amount": str(amount)},
            headers={**self.auth, "Idempotency-Key": key},
        )

    async def get(self, what: str = "", **params: str) -> dict:
        r = await self.client.get(f"/v1/facilities/F1{what}", params=params, headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def borrower(pg_store, clock) -> AsyncIterator[Borrower]:
    platform = await make_api(pg_store, clock)
    token = await platform.tokens.create("borrower", "F1", "acme", clock())
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
    async with (
        serving(create_app(platform)) as url,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client,
    ):
        yield Borrower(client, token)


def amounts(n: int, low: int, high: int, seed: int) -> list[Decimal]:
    rng = random.Random(seed)
    return [D(rng.randint(low * 100, high * 100)) * CENT for _ in range(n)]


def is_problem(r: httpx.Response, status: int, code: str) -> bool:
    return (
        r.status_code == status
        and r.headers["content-type"].startswith("application/problem+json")
        and r.json()["type"].endswith("/" + code)
    )


async def assert_books_agree(b: Borrower, principal: Decimal) -> None:
    """Stored balances equal balances re-derived from every posting (the audit endpoint)."""
    audit = await b.get("/audit")
    assert audit["balances"]["ok"], audit["balances"]
    assert audit["balances"]["stored"] == audit["balances"]["derived"]
    assert D(audit["balances"]["stored"]["principal"]) == principal
    assert D((await b.get())["principal"]) == principal


async def test_300_racing_drawdowns_never_exceed_the_availability(borrower):
    b = borrower
    before = await b.get()
    available = D(before["availability"])
    assert available > 0 and D(before["outstanding"]) == 0
    asks = amounts(300, 300, 1500, seed=300)  # about 270,000 asked of about 122,000 available
    assert sum(asks) > 2 * available

    answers = await asyncio.gather(*(b.money("drawdowns", a, f"race-{i}") for i, a in enumerate(asks)))

    lent = [a for a, r in zip(asks, answers, strict=True) if r.status_code == 201]
    refused = [(a, r) for a, r in zip(asks, answers, strict=True) if r.status_code != 201]
    assert lent and refused
    assert sum(lent) <= available
    for ask, r in refused:
        assert is_problem(r, 409, "insufficient_availability"), r.text
        assert D(r.json()["requested"]) == ask and D(r.json()["available"]) < ask
    after = await b.get()
    assert D(after["availability"]) == available - sum(lent)
    # Every refusal was fair: at the end there is less room left than the smallest refused ask.
    assert min(a for a, _ in refused) > D(after["availability"])
    statement = await b.get("/statement", **PERIOD)
    assert D(statement["drawn"]) == sum(lent)
    assert len(statement["lines"]) == len(lent)
    await assert_books_agree(b, sum(lent))


async def test_racing_drawdowns_and_repayments_keep_the_line_and_the_books(borrower):
    b = borrower
    assert (await b.money("drawdowns", D("60000.00"), "opening")).status_code == 201
    cap = D((await b.get())["availability"]) + D("60000.00")  # min(commitment, BB): fixed here
    draws = amounts(200, 300, 1500, seed=7)
    repays = amounts(100, 100, 1200, seed=8)
    calls = [("drawdowns", a, f"d-{i}") for i, a in enumerate(draws)]
    calls += [("repayments", a, f"r-{i}") for i, a in enumerate(repays)]
    random.Random(9).shuffle(calls)

    answers = await asyncio.gather(*(b.money(kind, a, key) for kind, a, key in calls))

    principal = D("60000.00")
    for (kind, amount, _), r in zip(calls, answers, strict=True):
        if r.status_code == 201:
            principal += amount if kind == "drawdowns" else -amount
        elif kind == "drawdowns":
            assert is_problem(r, 409, "insufficient_availability"), r.text
        else:
            assert is_problem(r, 422, "overpayment"), r.text
    assert sum(r.status_code == 201 for r in answers) > 100
    # After every single posting, in the order the database serialised them, the line held.
    lines = (await b.get("/statement", **PERIOD))["lines"]
    assert len(lines) == 1 + sum(r.status_code == 201 for r in answers)
    assert max(D(ln["balances"]["total_owed"]) for ln in lines) <= cap
    assert D(lines[-1]["balances"]["principal"]) == principal
    await assert_books_agree(b, principal)
