"""The gateway runner: subscriber -> batches -> ingest (one transaction) -> acknowledgements.

    event loop (paho loop_read) --> subscriber queue --pump--> batch queue
        --> batch (<= batch_max messages, <= batch_max_wait_s after its first)
        --> Ingest.commit (up to `pipeline` batches at once, each its own transaction)
        --> in batch order: Ingest.settle --> MqttSubscriber.ack(each message)

Pipelining: while one batch's transaction is in PostgreSQL, the next batch is decoded and
its transaction started (`pipeline`, 2 by default; 1 is strictly one batch after another).
Each batch's commit is independent of the others' (the store resolves concurrent batches as
it does for the gateways of a shared subscription: gateway/ingest.py `_Batch`); what happens
after the commit does not commute, so one task settles the batches in the order they were
taken - gate reads reach their portals in that order - and acknowledges each batch's
messages after its settle, so PUBACKs go out in the order the PUBLISH packets arrived (as
MQTT asks), never before the commit. Once a batch is given up unacknowledged (stop during a
store outage), no later batch is acknowledged either: the broker redelivers them all, and
deduplication absorbs what was committed.

Between batches, at most every `tick_s`, `Ingest.tick` closes quiet gate passages, sweeps
silent devices and prunes dedup keys, on the settling task.

When the store is unavailable `Ingest.commit` raises; the batch is retried with backoff and
nothing is acknowledged meanwhile. The broker stops sending once its in-flight window is full
(docs/mqtt.md), which is the back-pressure. On amqtt (the embedded broker) a message not
acknowledged within 5 s is dropped: the outage guarantee only holds on Mosquitto/EMQX.

`run_gateway` is what `pledge gateway` and `pledge serve` call: it starts the embedded broker
when no broker URL is configured (MQTT 3.1.1, no shared subscriptions), then runs until `stop`.
SQLite has one writer at a time, so there the pipeline is 1 (a second transaction would only
wait for the first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from gateway.broker import EmbeddedBroker
from gateway.ingest import Committed, Ingest, IngestConfig
from gateway.metrics import GatewayMetrics
from gateway.mqtt import RECEIVE_MAXIMUM, InboundMessage, MqttConfig, MqttSubscriber
from gateway.topics import PREFIX, events_filter, shared, status_filter
from ledger.service import LedgerService

__all__ = ["Gateway", "GatewayOptions", "run_gateway", "subscription_filters"]

log = logging.getLogger(__name__)

_MAX_RETRY_S = 10.0
_SITE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the topic grammar's ids: no wildcard can slip in


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """How to run a gateway (built from Settings by the composition root, api/cli.py)."""

    mqtt_url: str | None = None  # None: start an embedded broker
    client_id: str = "pledge-gateway"
    protocol: Literal[5, 311] = 5
    receive_maximum: int = RECEIVE_MAXIMUM
    share_group: str | None = None
    sites: tuple[str, ...] = ()  # only these sites' topics (a gateway per site); () = every site
    batch_max: int = 500
    batch_max_wait_s: float = 0.02
    tick_s: float = 0.25
    pipeline: int = 2  # batches committing at once (1 on SQLite)
    ingest: IngestConfig = field(default_factory=IngestConfig)


def subscription_filters(share_group: str | None, sites: tuple[str, ...] = ()) -> list[str]:
    """The events and status filters (of every site, or of `sites` only), as
    `$share/{group}/...` when a group is set."""
    for site in sites:
        if not _SITE.fullmatch(site):
            raise ValueError(f"bad site id {site!r}: expected [A-Za-z0-9_.-]{{1,64}}")
    if sites:
        filters = [f"{PREFIX}/{site}/+/{channel}" for site in sites for channel in ("events", "status")]
    else:
        filters = [events_filter(), status_filter()]
    return [shared(share_group, f) for f in filters] if share_group else filters


class Gateway:
    """Runs one subscriber into one ingest until stopped (see module doc)."""

    def __init__(
        self,
        subscriber: MqttSubscriber,
        ingest: Ingest,
        *,
        filters: list[str],
        batch_max: int = 500,
        batch_max_wait_s: float = 0.02,
        tick_s: float = 0.25,
        pipeline: int = 2,
    ) -> None:
        if batch_max < 1 or batch_max_wait_s < 0 or tick_s <= 0 or pipeline < 1:
            raise ValueError("need batch_max >= 1, batch_max_wait_s >= 0, tick_s > 0, pipeline >= 1")
        self.subscriber = subscriber
        self.ingest = ingest
        self.filters = filters
        self.batch_max = batch_max
        self.batch_max_wait_s = batch_max_wait_s
        self.tick_s = tick_s
        self.pipeline = pipeline
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self.batches = 0
        self.acked = 0
        self._halted = False  # a batch was given up unacknowledged: acknowledge nothing after it

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Start ingest and the subscription, then loop until `stop` is set. The batches being
        committed when `stop` is set are finished (committed and acknowledged) first."""
        await self.ingest.start()
        await self.subscriber.start(self.filters)
        self.ingest.resume()
        pump = asyncio.create_task(self._pump(), name="gateway-pump")
        slots = asyncio.Semaphore(self.pipeline)
        taken: asyncio.Queue[_Taken | None] = asyncio.Queue()
        settler = asyncio.create_task(self._settle_in_order(taken, slots), name="gateway-settle")
        log.info("gateway ready: subscribed to %s", self.filters)
        if ready is not None:
            ready()
        try:
            while not stop.is_set():
                if pump.done():  # the subscriber ended under us
                    pump.result()
                    break
                if settler.done():
                    settler.result()
                    break
                await slots.acquire()  # released by the settler once a commit is over
                if stop.is_set() or settler.done():
                    slots.release()
                    continue
                batch = await self._next_batch()
                if not batch:
                    slots.release()
                    continue
                commit = asyncio.create_task(self._commit(batch, stop), name="gateway-commit")
                taken.put_nowait(_Taken(batch, commit))
        except BaseException:
            settler.cancel()  # a failure or a cancellation: no batch in flight is acknowledged
            raise
        finally:
            taken.put_nowait(None)  # the settler finishes what was taken, then returns
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([settler])  # its failure, if any, was raised above already
            # What the settler did not get to (it failed or was cancelled): stop those commits.
            # Their batches stay unacknowledged; whatever of them committed is a duplicate later.
            left = [e.commit for e in _drain(taken) if e is not None and not e.commit.done()]
            for task in left:
                task.cancel()
            if left:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait(left)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await self.subscriber.stop()
            log.info("gateway stopped after %d batches, %d messages acknowledged",
                     self.batches, self.acked)

    async def _pump(self) -> None:
        # messages() is an async generator: reading it through wait_for would close it on the
        # first timeout, so one task drains it into a plain queue the batcher can time out on.
        async for message in self.subscriber.messages():
            self._queue.put_nowait(message)

    async def _next_batch(self) -> list[InboundMessage]:
        try:
            first = await asyncio.wait_for(self._queue.get(), self.tick_s)
        except TimeoutError:
            return []
        batch = [first]
        # The wait counts from the first message's arrival, not from now: a message that queued
        # while the previous batch was committing has waited already. Counted from now, it would
        # wait that commit plus the full window (a p99 of ~105 ms at a steady 1,000 events/s,
        # `pledge bench ingest`, against ~50 + commit ms).
        deadline = first.received_at_monotonic + self.batch_max_wait_s
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _commit(self, batch: list[InboundMessage], stop: asyncio.Event) -> Committed | None:
        """Commit a batch, retrying with backoff while the store is unavailable; None when
        `stop` came first (the batch is then not acknowledged)."""
        delay = 0.25
        while True:
            try:
                return await self.ingest.commit(batch)
            except Exception:
                log.exception("cannot commit a batch of %d; retrying in %.2f s (nothing acknowledged)",
                              len(batch), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return None  # not acknowledged: the broker redelivers to the next process
                delay = min(delay * 2, _MAX_RETRY_S)

    async def _settle_in_order(self, taken: asyncio.Queue[_Taken | None], slots: asyncio.Semaphore) -> None:
        """Settle and acknowledge the batches in the order they were taken; tick in between.
        Returns after the None that `run` queues when it stops taking batches."""
        next_tick = time.monotonic()
        try:
            while True:
                try:
                    entry = await asyncio.wait_for(taken.get(), max(0.0, next_tick - time.monotonic()))
                except TimeoutError:
                    pass  # nothing taken: time to tick
                else:
                    if entry is None:
                        return
                    try:
                        committed = await entry.commit
                    finally:
                        slots.release()
                    await self._settle_and_ack(entry.batch, committed)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_s
                    await self._tick()
        except BaseException:
            for _ in range(self.pipeline):  # never leave `run` waiting for a slot
                slots.release()
            raise

    async def _settle_and_ack(self, batch: list[InboundMessage], committed: Committed | None) -> None:
        if committed is None or self._halted:
            self._halted = True
            return
        try:
            await self.ingest.settle(committed)
        except Exception:  # committed already: a restart rebuilds open passages from the store
            log.exception("settling a committed batch of %d failed; acknowledging it", len(batch))
        for message in batch:
            if self.subscriber.ack(message):
                self.acked += 1
        self.batches += 1

    async def _tick(self) -> None:
        try:
            await self.ingest.tick()
        except Exception:
            log.exception("gateway housekeeping failed; will retry")


@dataclass(frozen=True, slots=True)
class _Taken:
    """A batch taken off the queue and the task committing it."""

    batch: list[InboundMessage]
    commit: asyncio.Task[Committed | None]


def _drain(queue: asyncio.Queue[_Taken | None]) -> list[_Taken | None]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def run_gateway(
    options: GatewayOptions,
    ledger: LedgerService,
    clock: Callable[[], datetime],
    metrics: GatewayMetrics,
    stop: asyncio.Event,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run a gateway (and an embedded broker when `options.mqtt_url` is None) until `stop`."""
    async with AsyncExitStack() as stack:
        url, protocol, group = options.mqtt_url, options.protocol, options.share_group
        if url is None:
            broker = EmbeddedBroker()
            await broker.start()
            stack.push_async_callback(broker.stop)
            log.warning(
                "PLEDGE_MQTT_URL is not set: using the embedded amqtt broker at %s. Its limits: "
                "MQTT 3.1.1 only; no redelivery of unacknowledged messages after a crash; a message "
                "unacknowledged for 5 s is dropped; no shared subscriptions; no persistence. "
                "Devices publish to %s.", broker.url, broker.url)
            url, protocol = broker.url, 311
            if group:
                log.warning("ignoring PLEDGE_MQTT_SHARE_GROUP=%s: amqtt has no shared subscriptions",
                            group)
                group = None
        elif protocol == 311:
            log.warning("MQTT 3.1.1: Mosquitto allows only max_inflight_messages (20 by default) "
                        "unacknowledged messages, which caps every batch at 20; prefer MQTT 5")
        config = MqttConfig(url=url, client_id=options.client_id, protocol=protocol,
                            receive_maximum=options.receive_maximum)
        ingest = Ingest(ledger, clock, metrics, options.ingest)
        filters = subscription_filters(group, options.sites)
        pipeline = options.pipeline if ledger.store.concurrent_writes else 1
        gateway = Gateway(MqttSubscriber(config), ingest, filters=filters,
                          batch_max=options.batch_max, batch_max_wait_s=options.batch_max_wait_s,
                          tick_s=options.tick_s, pipeline=pipeline)
        log.info("gateway connecting to %s as %r (MQTT %s)", config.redacted_url,
                 options.client_id, protocol)
        await gateway.run(stop, ready)
