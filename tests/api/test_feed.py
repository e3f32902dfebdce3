"""The live feed (Server-Sent Events): a `facility` message first, then one per change, and a
`credit` message for each credit event (a line crossed, a release approved).

F3 is opened here with a warning line at 30 % LTV, low enough that a drawdown within the
availability crosses it: 40 t of copper at about 8,000 EUR/t is a market value of about 320,000
and a borrowing base of about 38 % of it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from api.main import create_app
from api.routes import feed as feed_route
from tests.api.test_drawdown_race import serving
from tests.ledger.world import facility, lot

D = Decimal
SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """(event, data) of each message of a text/event-stream body."""
    messages = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:  # a block of comments only (": keep-alive") is no message
            messages.append((fields["event"], json.loads(fields["data"])))
    return messages


async def messages(lines: AsyncIterator[str], n: int) -> list[tuple[str, dict]]:
    """The next `n` messages of a live stream (a blank line ends each)."""
    out: list[tuple[str, dict]] = []
    block: list[str] = []
    async for line in lines:
        if line:
            block.append(line)
            continue
        if block:
            out += parse_sse("\n".join(block))
            block = []
        if len(out) == n:
            break
    return out


async def open_f3(api) -> dict[str, str]:
    """F3: warning line at 30 % LTV; 40 t of received, verified, pledged copper; its own borrower."""
    p = api.platform
    await p.credit.open_facility(
        facility("F3", commitment=D("1000000"), reserves=D(0), warning_ltv=D("0.30")), "B"
    )
    await p.ledger.register_lots(
        [lot(n, "F3", pledge=True, received=True, verified=True, qty="10") for n in range(7, 11)]
    )
    token = await p.tokens.create("borrower", "F3", "f3", p.clock())
    return {"Authorization": f"Bearer {token}"}


@SQLITE_ONLY
async def test_the_feed_opens_with_the_facility(api):
    r = await api.client.get("/v1/facilities/F1/feed", params={"max_events": 1}, headers=api.auth("borrower"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    [(event, data)] = parse_sse(r.text)
    assert event == "facility"
    assert data["facility_id"] == "F1" and D(data["availability"]) > 0 and data["line_state"] == "ok"


@SQLITE_ONLY
async def test_a_release_is_a_credit_message_after_the_facility(api):
    me = api.auth("borrower")
    r = await api.client.post(
        "/v1/facilities/F1/releases", json={"lot_ids": ["L000003"]}, headers={**me, "Idempotency-Key": "rel"}
    )
    assert r.status_code == 201, r.text
    feed = await api.client.get("/v1/facilities/F1/feed", params={"max_events": 2}, headers=me)
    (first, _), (second, event) = parse_sse(feed.text)
    assert (first, second) == ("facility", "credit")
    assert event["kind"] == "release_approved" and event["facts"]["lot_ids"] == ["L000003"]


async def _two_releases(api) -> list[int]:
    """Two approved releases on F1: two credit events; their ids."""
    me = api.auth("borrower")
    for n, lot_id in enumerate(["L000003", "L000004"]):
        body, headers = {"lot_ids": [lot_id]}, {**me, "Idempotency-Key": f"r{n}"}
        r = await api.client.post("/v1/facilities/F1/releases", json=body, headers=headers)
        assert r.status_code == 201, r.text
    return [e["event_id"] for e in await api.platform.credit.events("F1")]


@SQLITE_ONLY
async def test_a_reconnecting_client_gets_only_the_events_after_its_last(api):
    first, second = await _two_releases(api)
    me = api.auth("borrower")
    url = "/v1/facilities/F1/feed"
    everything = parse_sse((await api.client.get(url, params={"max_events": 3}, headers=me)).text)
    assert [(k, d.get("event_id")) for k, d in everything][1:] == [("credit", first), ("credit", second)]
    for params, headers in (
        ({"max_events": 2, "after": first}, me),
        ({"max_events": 2}, {**me, "Last-Event-ID": str(first)}),  # what an EventSource sends back
        ({"max_events": 2, "after": 0}, {**me, "Last-Event-ID": str(first)}),  # the header wins
    ):
        answer = await api.client.get(url, params=params, headers=headers)
        (kind1, _), (kind2, event) = parse_sse(answer.text)
        assert (kind1, kind2, event["event_id"]) == ("facility", "credit", second), (params, headers)


@SQLITE_ONLY
async def test_a_malformed_last_event_id_is_a_422_problem(api):
    for bad in ("abc", "-1", "1.5", str(2**63), "\u0663".encode()):  # an Arabic-Indic three
        r = await api.client.get(
            "/v1/facilities/F1/feed", headers={**api.auth("borrower"), "Last-Event-ID": bad}
        )
        assert r.status_code == 422, bad
        assert r.json()["type"].endswith("/invalid_reference"), r.json()


@SQLITE_ONLY
async def test_a_quiet_feed_sends_keep_alive_comments(api, monkeypatch):
    monkeypatch.setattr(feed_route, "HEARTBEAT_S", 0.05)
    me = api.auth("borrower")
    feed = api.client.get("/v1/facilities/F1/feed", params={"max_events": 2}, headers=me)
    listening = asyncio.create_task(feed)
    await asyncio.sleep(0.6)  # nothing changes: comments only (~10 polls of 0.05 s)
    await _two_releases(api)
    text = (await asyncio.wait_for(listening, 10)).text
    assert text.count(": keep-alive\n\n") >= 2, text[:300]
    assert parse_sse(text)[0][0] == "facility"


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)  # live, on the production database
async def test_a_drawdown_crossing_the_warning_line_reaches_an_open_feed(api):
    """Live, over a real server: subscribe first, then draw; the feed tells what changed."""
    f3 = await open_f3(api)
    async with (
        serving(create_app(api.platform)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", "/v1/facilities/F3/feed", params={"max_events": 3}, headers=f3) as feed,
    ):
        lines = feed.aiter_lines()
        async with asyncio.timeout(10):
            [(event, before)] = await messages(lines, 1)
        assert event == "facility" and before["line_state"] == "ok" and D(before["outstanding"]) == 0

        amount = (D(before["market_value"]) * D("0.35")).quantize(D("0.01"))  # LTV 35 % > 30 %
        assert amount <= D(before["availability"])
        drawn = await client.post(
            "/v1/facilities/F3/drawdowns",
            json={"amount": str(amount)},
            headers={**f3, "Idempotency-Key": "d"},
        )
        assert drawn.status_code == 201, drawn.text

        async with asyncio.timeout(10):
            (kind1, after), (kind2, crossed) = await messages(lines, 2)
    assert (kind1, kind2) == ("facility", "credit")
    assert after["line_state"] == "warning" and D(after["outstanding"]) == amount
    assert crossed["kind"] == "warning_line_crossed" and crossed["trigger"] == "drawdown"
    facts = crossed["facts"]
    assert D(facts["outstanding"]) == amount and D(facts["warning_ltv"]) == D("0.30")
    # The margin call: cash that brings LTV back to the warning line.
    assert D(facts["cash_needed"]) == (amount - D("0.30") * D(facts["market_value"])).quantize(D("0.01"))
