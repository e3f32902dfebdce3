"""The gateway end to end: devices publish over MQTT, the ledger and the evidence change.

Targets: a real Mosquitto (MQTT 5) with PostgreSQL and with SQLite, and the embedded amqtt
broker (MQTT 3.1.1) with SQLite. Each test takes a unique site id, so its topics
(`pledge/v1/{site}/...`) never meet those of another run sharing the Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.app import Gateway, subscription_filters
from gateway.broker import EmbeddedBroker
from gateway.mqtt import MqttConfig, MqttPublisher, MqttSubscriber, discard_session
from gateway.tables import (
    camera_count,
    dead_letter,
    passage,
    quantity_observation,
    tag_read,
    weight_observation,
)
from ledger.core.lot import LotStatus, Movement, MovementKind
from ledger.store.tables import journal_entry
from tests.conftest import drop_pg_schema, make_pg_store, make_sqlite_store
from tests.gateway.ingest_world import World, bad_inputs, epc, jbytes, make_world, prime, processed

SAMPLES = Path(__file__).parent / "samples"


@dataclass
class Target:
    name: str
    url: str
    protocol: int
    world: World


@pytest.fixture(params=["mosquitto-postgresql", "mosquitto-sqlite", "embedded-sqlite"])
async def target(request: pytest.FixtureRequest, tmp_path: Path, clock: Any) -> AsyncIterator[Target]:
    broker_name, store_name = request.param.split("-")
    async with contextlib.AsyncExitStack() as stack:
        if broker_name == "mosquitto":
            url, protocol = request.getfixturevalue("mqtt_url"), 5
        else:
            broker = await stack.enter_async_context(EmbeddedBroker())
            url, protocol = broker.url, 311
        if store_name == "postgresql":
            schema = f"t_{uuid.uuid4().hex[:12]}"
            store: Any = await make_pg_store(schema)
            stack.push_async_callback(drop_pg_schema, schema)
        else:
            store = await make_sqlite_store(tmp_path / "gw.db")
        stack.push_async_callback(store.close)
        site = f"T{uuid.uuid4().hex[:10]}"
        yield Target(request.param, url, protocol, await make_world(store, clock, site=site))


@contextlib.asynccontextmanager
async def running_gateway(t: Target) -> AsyncIterator[Gateway]:
    config = MqttConfig(t.url, f"gw-{uuid.uuid4().hex[:12]}", t.protocol)  # type: ignore[arg-type]
    gateway = Gateway(MqttSubscriber(config), t.world.ingest(), batch_max=200,
                      filters=subscription_filters(None, (t.world.site,)),
                      batch_max_wait_s=0.02, tick_s=0.05)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, ready.set))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=15, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set(), "the gateway did not get ready"
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        if t.protocol == 5:
            await discard_session(config)


async def publish(t: Target, messages: list[tuple[str, bytes]]) -> None:
    config = MqttConfig(t.url, f"pub-{uuid.uuid4().hex[:12]}", t.protocol)  # type: ignore[arg-type]
    async with MqttPublisher(config) as publisher:
        await publisher.publish_many(messages)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def count(world: World, table: Any, *where: Any) -> int:
    async with world.ledger.transaction() as tx:
        q = select(func.count()).select_from(table).where(*where)
        return int((await tx.conn.execute(q)).scalar_one())


async def test_every_format_through_mqtt_into_evidence_and_every_bad_input_into_dead_letters(
    target: Target,
) -> None:
    w = target.world
    now = w.clock()
    scale, cam, gate = (w.native(d) for d in ("scale-1", "cam-1", "gate-1"))
    first = prime(w)
    good = [
        first,
        first,  # published twice: no second effect
        scale.event("weight.sample", {"mass_kg": "24990.5", "stable": True}, now),
        cam.event("camera.count", {"label": "coil", "count": 4}, now),
        gate.heartbeat(now),
        (w.topic("impinj-1"), (SAMPLES / "impinj_stream.ndjson").read_bytes()),
        (w.topic("zebra-1"), (SAMPLES / "zebra_run_together.json").read_bytes()),
        (w.topic("epcis-1"), (SAMPLES / "epcis_document.jsonld").read_bytes()),
        (w.topic("scalej-1"), jbytes({"net": "1250.5", "unit": "kg", "stable": True, "seq": 7})),
        (w.topic("sics-1"), (SAMPLES / "mtsics_lines.txt").read_bytes()),
        (w.topic("axis-1"), (SAMPLES / "camera_event.json").read_bytes()),
    ]
    bad = bad_inputs(w)
    entries = await count(w, journal_entry)
    async with running_gateway(target):
        await publish(target, good)
        await eventually(lambda: _at_least(w, len(good)))
        await publish(target, list(bad.values()))
        await eventually(lambda: _at_least(w, len(good) + len(bad)))

    assert await count(w, tag_read, tag_read.c.device_id == "zone-1") == 1
    assert await count(w, tag_read, tag_read.c.device_id == "impinj-1", tag_read.c.gate) == 3
    assert await count(w, tag_read, tag_read.c.device_id == "zebra-1") == 3
    assert await count(w, tag_read, tag_read.c.device_id == "epcis-1") > 0
    assert await count(w, quantity_observation) > 0
    assert await count(w, weight_observation, weight_observation.c.device_id == "scale-1") == 1
    assert await count(w, weight_observation, weight_observation.c.device_id == "sics-1") == 2
    assert await count(w, camera_count, camera_count.c.device_id == "axis-1") > 0
    assert (await w.registry.status("gate-1")).online
    assert w.metrics.value("pledge_gateway_duplicates_total") == 1

    async with w.ledger.transaction() as tx:
        letters = {r.reason: r for r in await tx.conn.execute(select(dead_letter))}
    assert set(letters) == set(bad)
    for reason, (topic, raw) in bad.items():
        assert (letters[reason].topic, bytes(letters[reason].raw)) == (topic, raw[:262_144])
        assert w.metrics.value("pledge_gateway_dead_letters_total", reason=reason) == 1
    assert await count(w, journal_entry) == entries


async def _at_least(w: World, n: int) -> bool:
    return processed(w.metrics) >= n


async def test_gate_passages_through_mqtt_move_the_ledger(target: Target) -> None:
    w = target.world
    gate = w.native("gate-1")
    bb_before = (await w.ledger.borrowing_base("F1")).borrowing_base
    async with running_gateway(target):
        # in: lots 1, 2, 3 and a tag nobody registered
        inbound = [m for tag in (epc(1), epc(2), epc(3), "DEADBEEF0000000000000001")
                   for m in gate.passage(tag, w.clock())]
        await publish(target, inbound)
        await eventually(lambda: _at_least(w, len(inbound)))
        w.clock.advance(seconds=10)
        await eventually(lambda: _passages(w, 4))
        bb_in = (await w.ledger.borrowing_base("F1")).borrowing_base

        # out: lot 2 without a release, lot 3 with one
        await w.ledger.apply([Movement(MovementKind.RELEASE_AUTHORISATION, "L000003", w.clock(),
                                       ("R-1",))])
        outbound = [m for tag in (epc(2), epc(3)) for m in gate.passage(tag, w.clock(), inward=False)]
        await publish(target, outbound)
        await eventually(lambda: _at_least(w, len(inbound) + len(outbound)))
        w.clock.advance(seconds=10)
        await eventually(lambda: _passages(w, 6))

    assert bb_in > bb_before
    statuses = {n: (await w.ledger.lot(f"L00000{n}")).status for n in (1, 2, 3)}
    assert statuses == {1: LotStatus.PLEDGED, 2: LotStatus.REMOVED, 3: LotStatus.RELEASED}
    async with w.ledger.transaction() as tx:
        outcomes = sorted(r.outcome for r in await tx.conn.execute(select(passage)))
    assert outcomes == ["authorised_release", "receipt", "receipt", "receipt",
                        "removal_without_release", "unknown_tag"]
    assert await count(w, tag_read, tag_read.c.passage_id.is_(None)) == 0
    assert await w.ledger.verify("F1") is None


async def _passages(w: World, n: int) -> bool:
    return await count(w, passage) >= n


async def test_two_gateways_on_a_shared_subscription_commit_each_event_once(
    mqtt_url: str, tmp_path: Path, clock: Any
) -> None:
    """Mosquitto gives each message to one member of `$share/{group}/...`; redeliveries and a
    device's messages may reach either gateway, and still every event is committed once
    (dedup keys, and each device's state row locked per batch)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = await make_pg_store(schema)
    try:
        w = await make_world(store, clock, lots=0, site=f"S{uuid.uuid4().hex[:10]}",
                             devices={"zone-1": ("rfid_zone", "B", "native", {}),
                                      "zebra-1": ("rfid_zone", "B", "zebra", {})})
        group = f"g{uuid.uuid4().hex[:8]}"
        configs = [MqttConfig(mqtt_url, f"gw-{uuid.uuid4().hex[:12]}") for _ in range(2)]
        gateways = [Gateway(MqttSubscriber(c), w.ingest(), batch_max=50, batch_max_wait_s=0.01,
                            filters=subscription_filters(group, (w.site,)), tick_s=0.05)
                    for c in configs]
        stop = asyncio.Event()
        readies = [asyncio.Event() for _ in gateways]
        tasks = [asyncio.create_task(g.run(stop, r.set)) for g, r in zip(gateways, readies, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 15)
        zone = w.native("zone-1")
        reads = [zone.read(epc(1 + i % 7), clock()) for i in range(600)]
        zebra = (w.topic("zebra-1"), (SAMPLES / "zebra_run_together.json").read_bytes())
        stream = [*reads, *reads[:100], zebra, zebra]  # 100 native and 1 vendor redelivery
        target = Target("shared", mqtt_url, 5, w)
        await publish(target, stream)
        await eventually(lambda: _at_least(w, len(stream)))
        stop.set()
        await asyncio.gather(*tasks)
        for c in configs:
            await discard_session(c)

        assert all(g.batches > 0 for g in gateways), "both members should have had a share"
        assert await count(w, tag_read) == 600 + 3
        assert await count(w, dead_letter) == 0
        assert w.metrics.value("pledge_gateway_duplicates_total") == 101
        assert (await w.registry.status("zone-1")).last_seq == 600
    finally:
        await store.close()
        await drop_pg_schema(schema)
