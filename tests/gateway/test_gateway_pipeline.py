"""The runner's pipeline (gateway/app.py): several batches commit at once, but they are settled
and acknowledged in the order they were taken, and nothing after a batch given up is
acknowledged. Against the real Mosquitto (MQTT 5) and PostgreSQL, where batches really do
commit side by side; the only stand-in is a delay (or a failure) put in front of one batch's
commit, so that a later batch commits first."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from gateway.app import Gateway, subscription_filters
from gateway.ingest import Committed
from gateway.mqtt import InboundMessage, MqttConfig, MqttSubscriber, discard_session
from gateway.tables import dead_letter, tag_read
from tests.conftest import drop_pg_schema, make_pg_store
from tests.gateway.ingest_world import World, epc, make_world
from tests.gateway.test_ingest_mqtt import Target, count, eventually, publish

ZONE = {"zone-1": ("rfid_zone", "A", "native", {})}


@pytest.fixture
async def world(clock: Any) -> AsyncIterator[World]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = await make_pg_store(schema)
    try:
        yield await make_world(store, clock, lots=0, devices=ZONE, site=f"P{uuid.uuid4().hex[:10]}")
    finally:
        await store.close()
        await drop_pg_schema(schema)


def _seq(message: InboundMessage) -> int:
    return int(json.loads(message.payload)["seq"])


Commit = Callable[[], Awaitable[Committed]]
Wrap = Callable[[list[int], Commit], Awaitable[Committed]]


class _Run:
    """A gateway whose commits go through `wrap` (given the batch's seqs), with every
    acknowledgement recorded."""

    def __init__(self, w: World, mqtt_url: str, wrap: Wrap, client_id: str | None = None) -> None:
        self.config = MqttConfig(mqtt_url, client_id or f"gw-{uuid.uuid4().hex[:12]}")
        ingest = w.ingest()
        commit = ingest.commit
        self.finished: list[int] = []  # each batch's first seq, in the order its commit returned

        async def wrapped(messages: Sequence[InboundMessage]) -> Committed:
            seqs = [_seq(m) for m in messages]
            result = await wrap(seqs, lambda: commit(messages))
            self.finished.append(seqs[0])
            return result

        ingest.commit = wrapped  # type: ignore[method-assign]
        self.gateway = Gateway(MqttSubscriber(self.config), ingest, batch_max=10, batch_max_wait_s=0.005,
                               filters=subscription_filters(None, (w.site,)), tick_s=0.05, pipeline=3)
        self.acked: list[int] = []
        ack = self.gateway.subscriber.ack

        def record(message: InboundMessage) -> bool:
            self.acked.append(_seq(message))
            return ack(message)

        self.gateway.subscriber.ack = record  # type: ignore[method-assign]
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready = asyncio.Event()
        self.task = asyncio.create_task(self.gateway.run(self.stop, ready.set))
        await asyncio.wait_for(ready.wait(), 15)

    async def finish(self, *, forget_session: bool = True) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)
        if forget_session:
            await discard_session(self.config)


async def test_a_later_batch_committing_first_is_still_acknowledged_after_the_earlier_one(
    world: World, mqtt_url: str
) -> None:
    w = world

    async def hold_the_first(seqs: list[int], commit: Commit) -> Committed:
        if 1 in seqs:
            await asyncio.sleep(0.5)  # the next batches commit meanwhile
        return await commit()

    run = _Run(w, mqtt_url, hold_the_first)
    await run.start()
    zone = w.native("zone-1")
    stream = [zone.read(epc(1 + i % 5), w.clock()) for i in range(60)]
    await publish(Target("pipeline", mqtt_url, 5, w), stream)
    await eventually(lambda: _acked(run, 60), timeout=20)
    await run.finish()

    assert run.finished[0] != 1, f"the first batch should have committed after a later one: {run.finished}"
    assert run.acked == list(range(1, 61)), "PUBACKs must follow the order the messages arrived in"
    assert await count(w, tag_read) == 60
    assert await count(w, dead_letter) == 0
    assert (await w.registry.status("zone-1")).last_seq == 60
    # The first batch's seqs reached the store below the last committed one: accepted as late.
    assert w.metrics.value("pledge_gateway_late_total") > 0
    assert w.metrics.value("pledge_gateway_duplicates_total") == 0


async def test_nothing_after_a_batch_given_up_is_acknowledged(world: World, mqtt_url: str) -> None:
    w = world

    async def store_down_for_the_first(seqs: list[int], commit: Commit) -> Committed:
        if 1 in seqs:
            raise ConnectionError("store unavailable (simulated, for the batch holding seq 1)")
        return await commit()

    run = _Run(w, mqtt_url, store_down_for_the_first)
    await run.start()
    zone = w.native("zone-1")
    stream = [zone.read(epc(1), w.clock()) for _ in range(25)]
    await publish(Target("pipeline", mqtt_url, 5, w), stream)
    # The later batches commit, then wait behind the first, which keeps failing.
    await eventually(lambda: _rows(w, 1), timeout=20)
    await asyncio.sleep(0.5)
    await run.finish(forget_session=False)

    assert run.acked == [], "a later batch was acknowledged ahead of one given up"
    assert run.gateway.batches == 0
    held = await count(w, tag_read)
    assert 0 < held < 25
    # Every message stayed with the broker: a gateway on the same session gets all 25 again,
    # commits what was missing, and takes what was committed already as duplicates.
    async def plain(_seqs: list[int], commit: Commit) -> Committed:
        return await commit()

    again = _Run(w, mqtt_url, plain, client_id=run.config.client_id)
    await again.start()
    await eventually(lambda: _acked(again, 25), timeout=20)
    await again.finish()
    assert sorted(again.acked) == list(range(1, 26))
    assert await count(w, tag_read) == 25
    assert w.metrics.value("pledge_gateway_duplicates_total") == held


async def _acked(run: _Run, n: int) -> bool:
    return len(run.acked) >= n


async def _rows(w: World, n: int) -> bool:
    return await count(w, tag_read) >= n


async def test_a_failure_after_the_commit_ends_the_run_instead_of_hanging_it(
    world: World, mqtt_url: str
) -> None:
    """If the settling task dies (here: the acknowledgement itself raises), `run` must not
    wait forever for a pipeline slot: it ends with that error, and the batch stays with the
    broker (committed, unacknowledged: a redelivery is a duplicate)."""
    w = world

    async def plain(_seqs: list[int], commit: Commit) -> Committed:
        return await commit()

    run = _Run(w, mqtt_url, plain)

    def broken(message: InboundMessage) -> bool:
        raise RuntimeError("the socket is gone (simulated)")

    run.gateway.subscriber.ack = broken  # type: ignore[method-assign]
    await run.start()
    zone = w.native("zone-1")
    await publish(Target("pipeline", mqtt_url, 5, w), [zone.read(epc(1), w.clock()) for _ in range(40)])
    assert run.task is not None
    with pytest.raises(RuntimeError, match="simulated"):
        await asyncio.wait_for(run.task, 20)
    await discard_session(run.config)
    assert await count(w, tag_read) >= 1
