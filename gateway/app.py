"""The gateway runner: subscriber -> batches -> ingest (one transaction) -> acknowledgements.

    event loop (paho loop_read) --> subscriber queue --pump--> batch queue
        --> batch (<= batch_max messages, <= batch_max_wait_s after its first) --> Ingest.process
        --> commit --> MqttSubscriber.ack(each message)

Between batches, at most every `tick_s`, `Ingest.tick` closes quiet gate passages, sweeps
silent devices and prunes dedup keys. All of it runs in one asyncio task, so ingest never sees
two batches at once.

When the store is unavailable `Ingest.process` raises; the batch is retried with backoff and
nothing is acknowledged meanwhile. The broker stops sending once its in-flight window is full
(docs/mqtt.md), which is the back-pressure. On amqtt (the embedded broker) a message not
acknowledged within 5 s is dropped: the outage guarantee only holds on Mosquitto/EMQX.

`run_gateway` is what `pledge gateway` and `pledge serve` call: it starts the embedded broker
when no broker URL is configured (MQTT 3.1.1, no shared subscriptions), then runs until `stop`.
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
from gateway.ingest import Ingest, IngestConfig
from gateway.metrics import GatewayMetrics
from gateway.mqtt import InboundMessage, MqttConfig, MqttSubscriber
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
    receive_maximum: int = 1000
    share_group: str | None = None
    sites: tuple[str, ...] = ()  # only these sites' topics (a gateway per site); () = every site
    batch_max: int = 500
    batch_max_wait_s: float = 0.02
    tick_s: float = 0.25
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
    ) -> None:
        if batch_max < 1 or batch_max_wait_s < 0 or tick_s <= 0:
            raise ValueError("need batch_max >= 1, batch_max_wait_s >= 0, tick_s > 0")
        self.subscriber = subscriber
        self.ingest = ingest
        self.filters = filters
        self.batch_max = batch_max
        self.batch_max_wait_s = batch_max_wait_s
        self.tick_s = tick_s
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self.batches = 0
        self.acked = 0

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Start ingest and the subscription, then loop until `stop` is set. The batch being
        processed when `stop` is set is finished (committed and acknowledged) first."""
        await self.ingest.start()
        await self.subscriber.start(self.filters)
        self.ingest.resume()
        pump = asyncio.create_task(self._pump(), name="gateway-pump")
        log.info("gateway ready: subscribed to %s", self.filters)
        if ready is not None:
            ready()
        next_tick = time.monotonic()
        try:
            while not stop.is_set():
                if pump.done():  # the subscriber ended under us
                    pump.result()
                    break
                batch = await self._next_batch()
                if batch:
                    await self._commit_and_ack(batch, stop)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_s
                    await self._tick()
        finally:
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

    async def _commit_and_ack(self, batch: list[InboundMessage], stop: asyncio.Event) -> None:
        delay = 0.25
        while True:
            try:
                await self.ingest.process(batch)
                break
            except Exception:
                log.exception("cannot commit a batch of %d; retrying in %.2f s (nothing acknowledged)",
                              len(batch), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return  # not acknowledged: the broker redelivers to the next process
                delay = min(delay * 2, _MAX_RETRY_S)
        for message in batch:
            if self.subscriber.ack(message):
                self.acked += 1
        self.batches += 1

    async def _tick(self) -> None:
        try:
            await self.ingest.tick()
        except Exception:
            log.exception("gateway housekeeping failed; will retry")


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
        gateway = Gateway(MqttSubscriber(config), ingest, filters=filters,
                          batch_max=options.batch_max, batch_max_wait_s=options.batch_max_wait_s,
                          tick_s=options.tick_s)
        log.info("gateway connecting to %s as %r (MQTT %s)", config.redacted_url,
                 options.client_id, protocol)
        await gateway.run(stop, ready)
