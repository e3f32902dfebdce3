"""Devices, dead letters and /metrics over HTTP: staff register and inspect devices, read the
messages the gateway refused; Prometheus scrapes the gateway's counters."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api.main import create_app
from gateway.formats.native import encode_event
from gateway.ingest import Ingest
from gateway.metrics import GatewayMetrics
from gateway.mqtt import InboundMessage
from gateway.topics import events_topic
from tests.api.conftest import Api, make_api

GATE = {
    "device_id": "gate-01",
    "site_id": "SH1",
    "zone_id": "SH1-A",
    "kind": "rfid_gate",
    "format": "native",
    "antenna_sides": {"1": "outside", "2": "inside"},
    "heartbeat_interval_s": 30,
}


@pytest.fixture
async def api(store: Any, clock: Any) -> AsyncIterator[Api]:
    platform = await make_api(store, clock)
    platform.extra["metrics_registry"] = CollectorRegistry()
    now = clock()
    tokens = {
        role: await platform.tokens.create(role, "F1" if role == "borrower" else None, role, now)
        for role in ("borrower", "collateral_manager", "admin")
    }
    app = create_app(platform)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield Api(c, platform, tokens)


async def test_staff_register_a_device_and_read_its_status(api: Api) -> None:
    staff = api.auth("collateral_manager")
    created = await api.client.post("/v1/devices", json=GATE, headers=staff)
    assert created.status_code == 201, created.text
    body = created.json()
    assert len(bytes.fromhex(body["secret"])) == 32 and body["signed"] is True
    assert body["antenna_sides"] == {"1": "outside", "2": "inside"}

    one = await api.client.get("/v1/devices/gate-01", headers=api.auth("admin"))
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert one.json()["status"] == {
        "online": False,
        "last_seen_at": None,
        "last_seq": None,
        "changed_at": None,
    }
    listed = await api.client.get("/v1/devices", params={"site_id": "SH1"}, headers=staff)
    assert [d["device_id"] for d in listed.json()["items"]] == ["gate-01"]


async def test_device_errors_are_problems(api: Api) -> None:
    staff = api.auth("collateral_manager")
    await api.client.post("/v1/devices", json=GATE, headers=staff)
    again = await api.client.post("/v1/devices", json=GATE, headers=staff)
    assert (again.status_code, again.json()["type"].rsplit("/", 1)[1]) == (409, "device_exists")
    wrong_zone = await api.client.post(
        "/v1/devices", json={**GATE, "device_id": "g2", "zone_id": "QD2-Y"}, headers=staff
    )
    assert wrong_zone.status_code == 422 and wrong_zone.json()["field"] == "zone_id"
    one_side = await api.client.post(
        "/v1/devices", json={**GATE, "device_id": "g3", "antenna_sides": {"1": "outside"}}, headers=staff
    )
    assert one_side.status_code == 422 and one_side.json()["field"] == "antenna_sides"
    extra = await api.client.post(
        "/v1/devices", json={**GATE, "device_id": "g4", "colour": "red"}, headers=staff
    )
    assert extra.status_code == 422
    missing = await api.client.get("/v1/devices/nope", headers=staff)
    assert (missing.status_code, missing.json()["type"].rsplit("/", 1)[1]) == (404, "device_not_found")


async def test_devices_and_dead_letters_are_for_staff_only(api: Api) -> None:
    for method, url in (
        ("POST", "/v1/devices"),
        ("GET", "/v1/devices"),
        ("GET", "/v1/devices/x"),
        ("GET", "/v1/deadletters"),
    ):
        kw: dict[str, Any] = {"json": GATE} if method == "POST" else {}
        assert (await api.client.request(method, url, **kw)).status_code == 401
        borrower = await api.client.request(method, url, headers=api.auth("borrower"), **kw)
        assert borrower.status_code == 403


async def refuse_some(api: Api) -> tuple[list[bytes], GatewayMetrics]:
    """Register the gate, then feed ingest three messages it must refuse and one it accepts."""
    created = await api.client.post("/v1/devices", json=GATE, headers=api.auth("admin"))
    secret = bytes.fromhex(created.json()["secret"])
    clock = api.platform.clock
    metrics = GatewayMetrics(api.platform.extra["metrics_registry"])
    ingest = Ingest(api.platform.ledger, clock, metrics)
    await ingest.start()
    topic = events_topic("SH1", "gate-01")
    body = {"epc": "E2801170000000000000000A", "antenna": 1, "rssi_dbm": -61}
    raws = [b"{oops", encode_event("gate-01", 1, clock(), "rfid.read", body, b"k" * 32), b"[1, 2"]
    good = encode_event("gate-01", 2, clock(), "rfid.read", body, secret)
    for i, raw in enumerate([*raws, good]):
        clock.advance(seconds=1)
        await ingest.process([InboundMessage(topic, raw, i, 1, False, False, 0.0)])
    return raws, metrics


async def test_dead_letters_over_http_with_filters_pages_and_counts(api: Api) -> None:
    raws, _ = await refuse_some(api)
    staff = api.auth("collateral_manager")
    everything = (await api.client.get("/v1/deadletters", headers=staff)).json()
    assert [d["reason"] for d in everything["items"]] == ["malformed_json", "bad_signature", "malformed_json"]
    assert [base64.b64decode(d["raw_base64"]) for d in everything["items"]] == raws
    assert everything["counts"] == {"malformed_json": 2, "bad_signature": 1}
    assert everything["items"][1]["device_id"] == "gate-01" and not everything["items"][1]["truncated"]

    first = (await api.client.get("/v1/deadletters", params={"limit": 2}, headers=staff)).json()
    second = (
        await api.client.get(
            "/v1/deadletters", params={"limit": 2, "after": first["next_after"]}, headers=staff
        )
    ).json()
    assert len(first["items"]) == 2 and len(second["items"]) == 1 and second["next_after"] is None

    only = (await api.client.get("/v1/deadletters", params={"reason": "bad_signature"}, headers=staff)).json()
    assert [d["reason"] for d in only["items"]] == ["bad_signature"]
    since = (api.platform.clock() - timedelta(seconds=1)).isoformat()  # the last refusal
    recent = (await api.client.get("/v1/deadletters", params={"since": since}, headers=staff)).json()
    assert [d["reason"] for d in recent["items"]] == ["malformed_json"]
    naive = await api.client.get("/v1/deadletters", params={"since": "2026-01-05T09:00:00"}, headers=staff)
    assert naive.status_code == 422


async def test_metrics_page_exposes_the_gateway_counters(api: Api) -> None:
    await refuse_some(api)
    page = await api.client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    text = page.text
    assert 'pledge_gateway_dead_letters_total{reason="malformed_json"} 2.0' in text
    assert "pledge_gateway_messages_committed_total 1.0" in text
    assert "pledge_gateway_batch_size_count 4.0" in text
