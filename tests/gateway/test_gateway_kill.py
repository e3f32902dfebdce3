"""THE KILL TEST: `pledge gateway` is SIGKILLed mid-stream, twice, and the store still holds
exactly the stream's effect: every event once, every passage once, a journal that verifies.

Real services only: Mosquitto (MQTT 5, persistent session: it redelivers what the dead process
left unacknowledged, docs/mqtt.md) and PostgreSQL (a fresh schema, PLEDGE_DATABASE_SCHEMA).

The stream is published in three phases and each kill happens while messages are in flight
(published, not yet committed): while the phase is still being published. The rest of a phase
reaches the broker while the gateway is down, the next phase only after the restart: Mosquitto's
default `max_queued_messages` (1000) would otherwise drop the excess of an offline session - a
broker setting, not something the gateway could fix.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.mqtt import MqttConfig, MqttPublisher, discard_session
from gateway.tables import dead_letter, device_state, passage, seen_event, tag_read
from ledger.core.lot import LotStatus, Movement, MovementKind
from ledger.store.tables import journal_entry
from tests.conftest import PG_URL, drop_pg_schema, make_pg_store
from tests.gateway.ingest_world import World, epc, make_world
from tests.ledger.world import lot

ZONE_READS = 2000
INBOUND = 10  # lots 1..10 come in through the gate (receipts)
OUT_REMOVED, OUT_RELEASED = 11, 12  # in stock already; leave without / with a release
READS_PER_PASSAGE = 6


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Rig:
    world: World
    url: str
    client_id: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, command: str = "gateway") -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
        entry = Path(sys.executable).with_name("pledge")
        cmd = [str(entry)] if entry.exists() else [sys.executable, "-m", "api.cli"]
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen([*cmd, command], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 15.0) -> None:
        marker = f"--- start {self.starts}\n"
        deadline = time.monotonic() + timeout
        while True:
            text = self.log.read_text(errors="replace")
            if "gateway ready" in text[text.rfind(marker):]:
                return
            assert self.process is not None and self.process.poll() is None, text[-3000:]
            assert time.monotonic() < deadline, "gateway did not get ready:\n" + text[-3000:]
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def kill_if_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()

    async def count(self, table: Any, *where: Any) -> int:
        async with self.world.ledger.transaction() as tx:
            q = select(func.count()).select_from(table).where(*where)
            return int((await tx.conn.execute(q)).scalar_one())

    async def until(self, table: Any, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.count(table) < n:
            assert self.process is not None and self.process.poll() is None, self.tail()
            assert time.monotonic() < deadline, f"only {await self.count(table)} of {n}\n{self.tail()}"
            await asyncio.sleep(0.01)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
async def rig(mqtt_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = await make_pg_store(schema)
    site = f"K{uuid.uuid4().hex[:10]}"
    devices = {"gate-1": ("rfid_gate", "A", "native", {1: "outside", 2: "inside"}),
               "zone-1": ("rfid_zone", "B", "native", {})}
    world = await make_world(store, utcnow, lots=INBOUND, devices=devices, site=site)
    await world.ledger.register_lots([
        lot(n, pledge=True, received=True, verified=True, site_id=site, zone_id=f"{site}-A")
        for n in (OUT_REMOVED, OUT_RELEASED)])
    await world.ledger.apply([Movement(MovementKind.RELEASE_AUTHORISATION, f"L{OUT_RELEASED:06d}",
                                       utcnow(), ("R-kill",))])
    client_id = f"pledge-kill-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "PLEDGE_DATABASE_URL": PG_URL, "PLEDGE_DATABASE_SCHEMA": schema,
           "PLEDGE_MQTT_URL": mqtt_url, "PLEDGE_MQTT_CLIENT_ID": client_id,
           "PLEDGE_MQTT_SITES": site, "PLEDGE_METRICS_PORT": "0", "PLEDGE_DEBOUNCE_S": "1",
           "PLEDGE_BATCH_MAX": "100", "PLEDGE_GATEWAY_TICK_S": "0.1"}
    r = Rig(world, mqtt_url, client_id, env, tmp_path / "gateway.log")
    try:
        yield r
    finally:
        r.kill_if_running()
        await store.close()
        await drop_pg_schema(schema)
        await discard_session(MqttConfig(mqtt_url, client_id))


def the_stream(world: World) -> list[tuple[str, bytes]]:
    """2,000 zone reads with 12 gate passages woven in (10 in, 2 out), in publishing order."""
    zone, gate = world.native("zone-1"), world.native("gate-1")
    start = utcnow() - timedelta(minutes=2)
    passages = [(epc(n), True) for n in range(1, INBOUND + 1)]
    passages += [(epc(OUT_REMOVED), False), (epc(OUT_RELEASED), False)]
    stream: list[tuple[str, bytes]] = []
    every = ZONE_READS // len(passages)
    for i in range(ZONE_READS):
        stream.append(zone.read(epc(1 + i % 20), start + timedelta(milliseconds=i)))
        if i % every == every // 2 and passages:
            tag, inward = passages.pop(0)
            at = start + timedelta(seconds=5 * (i // every))  # passes 5 s apart on the gate's clock
            stream.extend(gate.passage(tag, at, inward, READS_PER_PASSAGE))
    assert not passages
    return stream


async def publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    async with MqttPublisher(MqttConfig(url, f"kill-pub-{uuid.uuid4().hex[:8]}")) as publisher:
        await publisher.publish_many(messages)


async def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(rig: Rig) -> None:
    stream = the_stream(rig.world)
    total = len(stream)
    assert total == ZONE_READS + 12 * READS_PER_PASSAGE
    phases = [stream[:900], stream[900:1700], stream[1700:]]
    started = time.monotonic()

    rig.start()
    await rig.ready()
    for phase, kill_at in zip(phases[:2], (400, 1300), strict=True):
        # The gateway keeps pace with the publisher, so waiting for the whole phase to be
        # published first could leave nothing in flight by the time of the kill (seen once in
        # CI): kill while the phase is still being published, then let the rest reach the
        # broker, which queues it for the dead session.
        publishing = asyncio.create_task(publish(rig.url, phase))
        await rig.until(tag_read, kill_at)  # some committed, the rest of the phase in flight
        rig.kill()
        await publishing
        in_flight = sum(len(p) for p in phases[: phases.index(phase) + 1]) - await rig.count(tag_read)
        assert in_flight > 0, "the kill should land while messages are in flight"
        rig.start()
        await rig.ready()
    await publish(rig.url, phases[2])
    await rig.until(tag_read, total)
    await rig.until(passage, 12)

    assert rig.process is not None
    rig.process.send_signal(signal.SIGTERM)  # a clean stop this time
    assert rig.process.wait(10) == 0, rig.tail()

    # every event exactly once
    assert await rig.count(tag_read) == total
    async with rig.world.ledger.transaction() as tx:
        keys = (await tx.conn.execute(select(func.count(func.distinct(tag_read.c.event_key))))).scalar_one()
        states = {r.device_id: r.last_seq for r in await tx.conn.execute(select(device_state))}
        passages = list(await tx.conn.execute(select(passage)))
        receipts = (await tx.conn.execute(select(func.count()).select_from(journal_entry).where(
            journal_entry.c.kind == "receipt"))).scalar_one()
    assert keys == total and await rig.count(seen_event) == total
    assert states == {"zone-1": ZONE_READS, "gate-1": 12 * READS_PER_PASSAGE}
    assert await rig.count(dead_letter) == 0
    # every passage exactly once, each with all its reads, every read in one
    assert sorted(p.outcome for p in passages) == sorted(
        ["receipt"] * INBOUND + ["removal_without_release", "authorised_release"])
    assert {p.reads for p in passages} == {READS_PER_PASSAGE}
    assert await rig.count(tag_read, tag_read.c.gate, tag_read.c.passage_id.is_(None)) == 0
    assert receipts == INBOUND
    # the ledger: lots where the stream put them, and a journal that verifies
    lots = {n: (await rig.world.ledger.lot(f"L{n:06d}")).status for n in range(1, 13)}
    assert lots == {**{n: LotStatus.PLEDGED for n in range(1, INBOUND + 1)},
                    OUT_REMOVED: LotStatus.REMOVED, OUT_RELEASED: LotStatus.RELEASED}
    assert await rig.world.ledger.verify("F1") is None
    assert time.monotonic() - started < 20


# --------------------------------------------------------------------------- clean stops


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def sqlite_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    from tests.conftest import make_sqlite_store

    db = tmp_path / "gw.db"
    store = await make_sqlite_store(db)
    devices = {"zone-1": ("rfid_zone", "B", "native", {})}
    world = await make_world(store, utcnow, lots=0, devices=devices)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEDGE_")}
    env.update({"PLEDGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "PLEDGE_API_PORT": str(_free_port()),
                "PLEDGE_METRICS_PORT": str(_free_port())})
    r = Rig(world, "", "", env, tmp_path / "gateway.log")
    try:
        yield r
    finally:
        r.kill_if_running()
        await store.close()


def _embedded_url(log: str) -> str:
    import re

    found = re.search(r"embedded amqtt broker at (mqtt://[0-9.]+:[0-9]+)", log)
    assert found, log[-2000:]
    return found.group(1)


async def _publish_311(url: str, messages: list[tuple[str, bytes]]) -> None:
    config = MqttConfig(url, f"pub-{uuid.uuid4().hex[:8]}", protocol=311)
    async with MqttPublisher(config) as publisher:
        await publisher.publish_many(messages)


async def _get(url: str) -> Any:
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url)


async def test_pledge_gateway_alone_starts_an_embedded_broker_serves_metrics_and_stops_on_sigint(
    sqlite_rig: Rig,
) -> None:
    rig = sqlite_rig
    rig.start()
    await rig.ready()
    url = _embedded_url(rig.tail())
    await _publish_311(url, [rig.world.native("zone-1").read(epc(1), utcnow())])
    await rig.until(tag_read, 1)
    page = await _get(f"http://127.0.0.1:{rig.env['PLEDGE_METRICS_PORT']}/metrics")
    assert "pledge_gateway_messages_committed_total 1.0" in page.text
    assert rig.process is not None
    rig.process.send_signal(signal.SIGINT)
    assert rig.process.wait(10) == 0, rig.tail()
    assert "gateway stopped" in rig.tail()


async def test_pledge_serve_runs_gateway_and_api_in_one_process_and_stops_on_sigterm(
    sqlite_rig: Rig,
) -> None:
    rig = sqlite_rig
    rig.start(command="serve")
    await rig.ready()
    api = f"http://127.0.0.1:{rig.env['PLEDGE_API_PORT']}"
    deadline = time.monotonic() + 10
    while True:
        try:
            health = await _get(f"{api}/v1/health")
            break
        except OSError:
            assert time.monotonic() < deadline, rig.tail()
            await asyncio.sleep(0.05)
    assert health.json() == {"status": "ok"}
    await _publish_311(_embedded_url(rig.tail()), [rig.world.native("zone-1").read(epc(1), utcnow())])
    await rig.until(tag_read, 1)
    metrics_page = await _get(f"{api}/metrics")
    assert "pledge_gateway_messages_committed_total 1.0" in metrics_page.text
    unauthenticated = await _get(f"{api}/v1/devices")
    assert unauthenticated.status_code == 401  # the devices router is mounted
    assert rig.process is not None
    rig.process.send_signal(signal.SIGTERM)
    assert rig.process.wait(10) == 0, rig.tail()
    assert "gateway stopped" in rig.tail()
