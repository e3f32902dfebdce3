"""api/body_limit.py: a body above the limit is a 413 problem+json, declared or streamed, and
changes nothing; a body at the limit goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx

from api.main import MAX_BODY_BYTES, create_app
from api.settings import Settings

LIMIT = 1024
DRAW = "/v1/facilities/F1/drawdowns"


def _body(size: int) -> bytes:
    head, tail = b'{"amount": "1.00", "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def _client(api) -> httpx.AsyncClient:
    app = create_app(api.platform, max_body_bytes=LIMIT)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _is_413(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/payload_too_large")
    assert str(LIMIT) in r.json()["detail"]


async def test_a_declared_body_above_the_limit_is_refused_unread(api):
    async with await _client(api) as c:
        for path in (DRAW, "/v1/prices"):
            headers = api.auth("borrower") | {"Idempotency-Key": "big", "content-type": "application/json"}
            _is_413(await c.post(path, content=_body(LIMIT + 1), headers=headers))
    assert (await api.platform.credit.summary("F1")).principal == Decimal(0)


async def test_a_streamed_body_is_stopped_when_it_passes_the_limit(api):
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 512

    async with await _client(api) as c:
        headers = api.auth("borrower") | {"Idempotency-Key": "stream", "content-type": "application/json"}
        _is_413(await c.post(DRAW, content=chunks(), headers=headers))
    assert (await api.platform.credit.summary("F1")).principal == Decimal(0)


async def test_a_body_at_the_limit_goes_through(api):
    async with await _client(api) as c:
        headers = api.auth("borrower") | {"Idempotency-Key": "fits", "content-type": "application/json"}
        r = await c.post(DRAW, content=_body(LIMIT), headers=headers)
    assert r.status_code == 422 and r.json()["type"].endswith("/validation_error")  # "pad" is not a field
    r = await api.client.get("/v1/health")
    assert r.status_code == 200


def test_the_limit_is_configured():
    assert Settings().api_max_body_bytes == MAX_BODY_BYTES == 16 * 1024 * 1024
    assert Settings(api_max_body_bytes=4096).api_max_body_bytes == 4096
