"""Ingest: MQTT messages in, evidence, device state, dead letters and ledger movements out.

One call of `process(messages)` handles one batch (the runner, gateway/app.py, bounds it by
size and time and acknowledges every message of it once `process` returns):

1. Prepare each message without touching the store: size, topic, device (an in-memory copy of
   the registry), the topic's site, decode with `now` from the injected clock. A refusal becomes
   a dead letter with its reason; nothing raises out of this step.
2. ONE transaction for the batch: read the devices' state rows (unlocked), drop duplicates
   (event keys already committed) and stale native sequence numbers, claim the new dedup keys
   (a key a concurrent batch claimed first is a duplicate), write evidence rows and dead
   letters, then lock the state rows to merge device state and transitions; commit (see
   `_Batch`). Native messages are taken in `seq` order per device within a batch; a `seq` at
   or below the device's last one whose key is unseen is accepted when its time is within the
   dedup horizon (a reordering, e.g. across a shared subscription: Mosquitto has no per-device
   affinity) and refused as stale_sequence beyond it (gateway/dedup.py explains why that is
   replay-safe).
3. If that transaction fails (a poison message the store refuses, e.g. a NUL character
   PostgreSQL cannot store), each message is retried in its own transaction: the poison one is
   dead-lettered alone (ledger_rejected), the others commit. If even a dead letter cannot be
   written the store is down: `StoreUnavailable` propagates, nothing is acknowledged, and the
   broker keeps the messages.
4. After the commit, gate reads are fed to their gate's `Portal`; passages it closes (and, on
   `tick()`, passages quiet for the debounce window) are committed by `close_passages`: one
   transaction writes the passage, assigns its reads, and applies the ledger movement
   (`LedgerService.apply_in`) computed from the lot's state read in that same transaction.

Crash safety of passages: reads are committed (and acknowledged) before their passage closes,
with `passage_id` NULL. `start()` rebuilds the portals from those open reads, so a crash loses
no passage; the passage id is derived from device, EPC and first event key, so a rebuilt
passage that was in fact committed is recognised and never applied twice.

Time is an input: `now` comes from the clock passed in, for decoding (future timestamps),
liveness, the debounce of passages and the dedup horizon.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, text, update

from gateway import dedup, health
from gateway.dead_letter import DeadLetter, describe, insert_dead_letters
from gateway.device import DeviceContext
from gateway.errors import DecodeError, DeviceMismatch, GatewayError, PayloadTooLarge, UnknownDevice
from gateway.evidence import EvidenceRows
from gateway.formats import MAX_PAYLOAD_BYTES, decode
from gateway.metrics import GatewayMetrics
from gateway.movement import passage_id, verdict
from gateway.mqtt import InboundMessage
from gateway.observation import (
    CameraCount,
    Heartbeat,
    Observation,
    QuantityObservation,
    TagRead,
    WeightSample,
)
from gateway.portal import Passage, Portal
from gateway.registry import Device, DeviceRegistry
from gateway.tables import passage as passage_table
from gateway.tables import tag_read
from gateway.topics import Topic, events_topic, parse_topic
from ledger.core.lot import Lot, apply_movement
from ledger.service import LedgerService

__all__ = ["BatchReport", "Committed", "Ingest", "IngestConfig", "StoreUnavailable"]

log = logging.getLogger(__name__)

# Both the partial index ix_tag_read_open_gate and the queries use this exact predicate, so that
# SQLite (which matches partial-index predicates textually) and PostgreSQL both use the index.
_OPEN_GATE = text("gate AND passage_id IS NULL")


class StoreUnavailable(GatewayError):
    """The store refused even a dead letter: the batch must not be acknowledged."""


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Tuning of ingest. Seconds throughout."""

    debounce_s: float = 2.0
    max_skew_s: float = 300.0
    heartbeat_grace: float = 1.5
    dedup_retention_s: float = 7 * 86400.0
    device_refresh_s: float = 30.0
    unknown_refresh_s: float = 1.0  # at most one registry reload per second for unknown ids
    sweep_every_s: float = 5.0
    prune_every_s: float = 60.0


@dataclass
class BatchReport:
    """What one `process` call did, message by message (each message counts once)."""

    committed: int = 0
    duplicates: int = 0
    ignored: int = 0
    late: int = 0  # native messages accepted below the device's last seq (reordered, new)
    dead_letters: Counter[str] = field(default_factory=Counter)
    passages: Counter[str] = field(default_factory=Counter)

    def merge(self, other: BatchReport) -> None:
        self.committed += other.committed
        self.duplicates += other.duplicates
        self.ignored += other.ignored
        self.late += other.late
        self.dead_letters.update(other.dead_letters)
        self.passages.update(other.passages)


@dataclass
class _Item:
    """One message on its way through a batch."""

    message: InboundMessage
    topic: Topic | None = None
    device: Device | None = None
    observations: list[Observation] = field(default_factory=list)
    status: health.StatusWord | None = None
    dead: DeadLetter | None = None

    @property
    def native(self) -> bool:
        return self.device is not None and self.device.format == "native"

    @functools.cached_property
    def digest(self) -> str | None:
        """sha256 of a native message's bytes (same seq, same bytes: a redelivery)."""
        return hashlib.sha256(self.message.payload).hexdigest() if self.native else None

    def seq(self) -> int:
        """Sort key within a device: native seq, so a batch absorbs reordering."""
        if self.native and self.observations:
            return _seq(self.observations[0]) or 0
        return 0


@dataclass
class Committed:
    """A batch `Ingest.commit` committed: its in-memory consequences, which `Ingest.settle`
    applies after the commit, and the batch's `now`."""

    now: datetime
    report: BatchReport = field(default_factory=BatchReport)
    gate_reads: list[TagRead] = field(default_factory=list)
    latest_at: datetime | None = None


_SEQUENCED = (TagRead, WeightSample, CameraCount, Heartbeat)  # a tuple: isinstance's fast case


def _seq(o: Observation) -> int | None:
    return o.seq if isinstance(o, _SEQUENCED) else None


class Ingest:
    """Turns batches of MQTT messages into committed evidence and movements (see module doc).

    `process(batch)` is `settle(await commit(batch))`. `commit` may run for several batches at
    once (the runner pipelines them: gateway/app.py); `settle` and `tick` must run on one task,
    `settle` in the order the batches were taken, since gate reads reach their portals there.
    """

    def __init__(
        self,
        ledger: LedgerService,
        clock: Callable[[], datetime],
        metrics: GatewayMetrics,
        config: IngestConfig | None = None,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.metrics = metrics
        self.config = config or IngestConfig()
        self.registry = DeviceRegistry(ledger.store, clock)
        self._devices: dict[str, Device] = {}  # active devices: whose messages we accept
        self._known: dict[str, Device] = {}  # every device, for passages of deactivated gates
        self._contexts: dict[str, DeviceContext] = {}  # active devices, as decoders see them
        # Registry reloads are operational, not domain logic: they run on the monotonic clock.
        self._loaded_at: float | None = None
        self._unknown_reload_at: float | None = None
        self._portals: dict[str, Portal] = {}
        self._arrival: dict[str, tuple[datetime, datetime]] = {}  # device -> (read at, arrived)
        self._pending: list[Passage] = []  # closed by a portal, not yet committed
        # A native seq at or below the device's last one is still new if its key is unseen and
        # its time is recent enough that, had it been committed, its key would still be kept.
        self.horizon = timedelta(seconds=max(0.0, self.config.dedup_retention_s - self.config.max_skew_s))
        self._max_skew = timedelta(seconds=self.config.max_skew_s)
        self._next_sweep: datetime | None = None
        self._next_prune: datetime | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Load the registry and rebuild open gate passages from the store; returns how many
        open reads were replayed into portals."""
        await self.refresh_devices()
        async with self.ledger.transaction() as tx:
            rows = list(await tx.conn.execute(
                select(tag_read).where(_OPEN_GATE).order_by(tag_read.c.device_id, tag_read.c.at,
                                                            tag_read.c.read_id)))
        reads = [TagRead(r.device_id, r.at, r.event_key, r.epc, r.antenna, r.rssi_dbm,
                         r.direction) for r in rows]
        closed = self._feed(reads, self.clock())
        if closed:  # passes that later reads had already proven finished
            await self.close_passages(closed)
        if reads:
            log.info("rebuilt %d open passages from %d unassigned gate reads",
                     sum(len(p) for p in self._portals.values()), len(reads))
        return len(reads)

    def resume(self) -> None:
        """Call once the subscription is live: rebuilt passes then wait a full debounce window
        from now for their redelivered reads before they close."""
        now = self.clock()
        for device_id, (at, _arrived) in self._arrival.items():
            self._arrival[device_id] = (at, now)

    async def refresh_devices(self) -> None:
        devices = await self.registry.list()
        self._known = {d.device_id: d for d in devices}
        self._devices = {d.device_id: d for d in devices if d.active}
        self._contexts = {d.device_id: d.context() for d in self._devices.values()}
        self._loaded_at = time.monotonic()

    # ------------------------------------------------------------------ batches

    async def process(self, messages: Sequence[InboundMessage]) -> BatchReport:
        """Commit what `messages` carry and settle it (`commit`, then `settle`).
        Raises StoreUnavailable when nothing could be committed; then ack nothing."""
        return await self.settle(await self.commit(messages))

    async def commit(self, messages: Sequence[InboundMessage]) -> Committed:
        """Decode and commit what `messages` carry (one transaction, or one per message after a
        failure); nothing in memory changes but the registry copy. Safe to run for several
        batches at once: the store sorts out concurrent batches as it does for the gateways of a
        shared subscription (`_Batch`). Raises StoreUnavailable when nothing could be committed."""
        now = self.clock()
        if not messages:
            return Committed(now)
        self.metrics.received.inc(len(messages))
        items = [await self._prepare(m, now) for m in messages]
        started = time.perf_counter()
        try:
            done = await self._commit(items, now)
        except Exception as e:
            log.warning("batch of %d failed (%s); retrying message by message", len(items),
                        describe(e))
            done = await self._commit_each(items, now)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(messages))
        return done

    async def settle(self, committed: Committed) -> BatchReport:
        """Apply a committed batch in memory: its gate reads to their portals (committing the
        passages they close) and its counts to the metrics. Call in batch order, on one task."""
        report, now = committed.report, committed.now
        closed = self._feed(committed.gate_reads, now)
        if closed:
            report.passages.update(await self.close_passages(closed))
        self._count(report, committed.latest_at, now)
        return report

    async def _prepare(self, m: InboundMessage, now: datetime) -> _Item:
        item = _Item(m)
        try:
            item.topic = parse_topic(m.topic)  # first: the dead letter then names the device
            if len(m.payload) > MAX_PAYLOAD_BYTES:
                raise PayloadTooLarge(f"payload of {len(m.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                                      size=len(m.payload))
            item.device = await self._device(item.topic.device)
            self._check_site(item.topic, item.device)
            if item.topic.channel == "status" and not _signed(item.device, m.payload):
                item.status = health.parse_status(m.payload)
                if item.status == "online" and m.retain:
                    item.status = None  # a replay of an old state, delivered on subscription
            else:
                item.observations = decode(
                    item.device.format, m.payload, self._contexts[item.device.device_id], now,
                    max_skew=self._max_skew)
        except DecodeError as e:
            item.dead = self._dead_letter(item, now, e.reason, describe(e))
        except Exception as e:  # a decoder bug must not stop ingest; keep the bytes for replay
            log.exception("unexpected error decoding a message on %s", m.topic)
            item.dead = self._dead_letter(item, now, "internal_error", describe(e))
        return item

    async def _device(self, device_id: str) -> Device:
        found = self._devices.get(device_id)
        if found is None:
            last, now = self._unknown_reload_at, time.monotonic()
            if last is None or now - last >= self.config.unknown_refresh_s:
                self._unknown_reload_at = now
                await self.refresh_devices()
                found = self._devices.get(device_id)
        if found is None:
            raise UnknownDevice(f"device {device_id} is not registered (or not active)",
                                device_id=device_id)
        return found

    @staticmethod
    def _check_site(topic: Topic, device: Device) -> None:
        if device.site_id != topic.site:
            raise DeviceMismatch(
                f"device {device.device_id} is registered at site {device.site_id}, "
                f"not {topic.site}", device_id=device.device_id, topic_site=topic.site)

    @staticmethod
    def _dead_letter(item: _Item, now: datetime, reason: str, detail: str) -> DeadLetter:
        t, m = item.topic, item.message
        return DeadLetter.of(now, reason, m.topic, m.payload, detail,
                             t.site if t else None, t.device if t else None)

    async def _commit(self, items: Sequence[_Item], now: datetime) -> Committed:
        async with self.ledger.transaction() as tx:
            return await _Batch(tx.conn, tx.dialect, now, self.horizon).write(items)

    async def _commit_each(self, items: Sequence[_Item], now: datetime) -> Committed:
        total = Committed(now)
        for item in items:
            try:
                one = await self._commit([item], now)
            except Exception as e:
                log.warning("message on %s refused by the store: %s", item.message.topic, describe(e))
                await self._refuse(item, now, e)
                total.report.dead_letters["ledger_rejected"] += 1
                continue
            total.report.merge(one.report)
            total.gate_reads.extend(one.gate_reads)
            if one.latest_at is not None:
                total.latest_at = max(total.latest_at or one.latest_at, one.latest_at)
        return total

    async def _refuse(self, item: _Item, now: datetime, error: Exception) -> None:
        letter = self._dead_letter(item, now, "ledger_rejected", describe(error))
        try:
            async with self.ledger.transaction() as tx:
                await insert_dead_letters(tx.conn, [letter])
        except Exception as e:
            raise StoreUnavailable(f"cannot write a dead letter: {describe(e)}") from e

    def _count(self, report: BatchReport, latest_at: datetime | None, now: datetime) -> None:
        m = self.metrics
        m.committed.inc(report.committed)
        m.duplicates.inc(report.duplicates)
        m.ignored.labels("empty").inc(report.ignored)
        m.late.inc(report.late)
        for reason, n in report.dead_letters.items():
            m.dead_letters.labels(reason).inc(n)
        if latest_at is not None:
            m.lag_seconds.set(max(0.0, (now - latest_at).total_seconds()))

    # ------------------------------------------------------------------ passages

    def _feed(self, reads: Iterable[TagRead], now: datetime) -> list[Passage]:
        """Committed gate reads into their gate's portal; returns passes they closed."""
        closed: list[Passage] = []
        for r in sorted(reads, key=lambda r: (r.device_id, r.at)):
            portal = self._portals.get(r.device_id)
            if portal is None:
                device = self._known.get(r.device_id)
                sides = device.antenna_sides if device is not None else {}
                portal = self._portals[r.device_id] = Portal(self.config.debounce_s, sides)
            closed.extend(portal.feed(r))
            previous = self._arrival.get(r.device_id)
            latest = r.at if previous is None else max(previous[0], r.at)
            self._arrival[r.device_id] = (latest, now)
        return closed

    def _quiet(self, now: datetime) -> list[Passage]:
        """Passes quiet for the debounce window. A device's clock is not ours: its "now" is
        estimated as its latest read time plus the time since that read arrived, so a gate
        whose clock runs behind does not see its passes cut short."""
        closed: list[Passage] = []
        for device_id, portal in self._portals.items():
            if len(portal) and device_id in self._arrival:
                at, arrived = self._arrival[device_id]
                closed.extend(portal.flush(at + (now - arrived)))
        return sorted(closed, key=lambda p: (p.last_seen, p.device_id, p.epc))

    async def close_passages(self, passages: Sequence[Passage]) -> Counter[str]:
        """Commit closed passages with their movements (together; one by one after a failure).
        Passages that cannot be committed at all stay pending for the next tick."""
        batch, self._pending = [*self._pending, *passages], []
        outcomes: Counter[str] = Counter()
        if not batch:
            return outcomes
        now = self.clock()
        try:
            outcomes.update(await self._commit_passages(batch, now))
        except Exception as e:
            log.warning("%d passages failed together (%s); one by one", len(batch), describe(e))
            for i, p in enumerate(batch):
                try:
                    outcomes.update(await self._commit_passages([p], now))
                except Exception as one:
                    try:
                        await self._reject_passage(p, one, now)
                        outcomes["ledger_rejected"] += 1
                    except Exception:
                        log.exception("store unavailable: %d passages kept for later", len(batch) - i)
                        self._pending = batch[i:]
                        break
        for outcome, n in outcomes.items():
            self.metrics.passages.labels(outcome).inc(n)
        return outcomes

    async def _commit_passages(self, passages: Sequence[Passage], now: datetime) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        async with self.ledger.transaction() as tx:
            conn = tx.conn
            by_epc = await tx.lots_by_epc(sorted({p.epc for p in passages}))
            # The ledger's lock protocol: every writer of a lot holds its facility's journal head.
            # Take those heads first (apply_in takes them again, already ours), then re-read the
            # lots: the rule sees exactly what apply_in will check, and the lock order is the
            # ledger's own, so a passage cannot deadlock against a release or a drawdown.
            lot_ids = sorted({lot.lot_id for lot in by_epc.values()})
            await tx.lock_heads_of_lots(lot_ids)
            current: dict[str, Lot] = await tx.lots_by_id(lot_ids)
            ids = {passage_id(p): p for p in passages}
            done = {r.passage_id for r in await conn.execute(
                select(passage_table.c.passage_id).where(passage_table.c.passage_id.in_(list(ids))))}
            rows, movements = [], []
            for pid, p in ids.items():
                if pid in done:
                    continue  # committed before a crash; its reads are assigned already
                site_id, zone_id = self._where(p)
                known = by_epc.get(p.epc)
                lot = current.get(known.lot_id) if known is not None else None
                v = verdict(p, lot, site_id, zone_id)
                if v.movement is not None and lot is not None:
                    movements.append(v.movement)
                    current[lot.lot_id] = apply_movement(lot, v.movement)
                rows.append(_passage_row(pid, p, site_id, zone_id, lot, v.outcome, now))
                outcomes[v.outcome] += 1
            await self._write_passages(conn, rows, passages)
            if movements:
                await self.ledger.apply_in(tx, movements, trigger="gateway")
        return outcomes

    def _where(self, p: Passage) -> tuple[str, str | None]:
        device = self._known[p.device_id]  # its reads were accepted, so it is registered
        return device.site_id, device.zone_id

    @staticmethod
    async def _write_passages(conn: Any, rows: list[dict[str, Any]], passages: Sequence[Passage]) -> None:
        if not rows:
            return
        await conn.execute(passage_table.insert(), rows)
        by_id = {passage_id(p): p for p in passages}
        for row in rows:
            p = by_id[row["passage_id"]]
            # The pass's reads are exactly the open reads of this EPC at this gate within its
            # time span (a portal keeps one open pass per EPC and passes never overlap).
            await conn.execute(
                update(tag_read)
                .where(and_(_OPEN_GATE, tag_read.c.device_id == p.device_id,
                            tag_read.c.at >= p.first_seen, tag_read.c.at <= p.last_seen,
                            tag_read.c.epc == p.epc))
                .values(passage_id=row["passage_id"]))

    async def _reject_passage(self, p: Passage, error: Exception, now: datetime) -> None:
        """The ledger refused a passage's movement: keep the passage (outcome ledger_rejected)
        and its reads, and a dead letter describing it, in one transaction."""
        site_id, zone_id = self._where(p)
        pid = passage_id(p)
        raw = json.dumps({"passage_id": pid, "device_id": p.device_id, "epc": p.epc,
                          "direction": p.direction, "first_seen": p.first_seen.isoformat(),
                          "last_seen": p.last_seen.isoformat(), "reads": p.reads,
                          "event_keys": list(p.event_keys)}).encode()
        topic = events_topic(site_id, p.device_id)
        letter = DeadLetter.of(now, "ledger_rejected", topic, raw, describe(error), site_id,
                               p.device_id)
        async with self.ledger.transaction() as tx:
            exists = (await tx.conn.execute(select(passage_table.c.passage_id).where(
                passage_table.c.passage_id == pid))).first()
            if exists is None:
                await self._write_passages(tx.conn, [_passage_row(
                    pid, p, site_id, zone_id, None, "ledger_rejected", now)], [p])
            await insert_dead_letters(tx.conn, [letter])
        self.metrics.dead_letters.labels("ledger_rejected").inc()

    # ------------------------------------------------------------------ housekeeping

    async def tick(self) -> None:
        """Periodic work, driven by the runner: close quiet passages, retry pending ones,
        mark silent devices offline, prune dedup keys, reload the registry."""
        now = self.clock()
        quiet = self._quiet(now)
        if quiet or self._pending:
            await self.close_passages(quiet)
        if self._next_sweep is None or now >= self._next_sweep:
            self._next_sweep = now + timedelta(seconds=self.config.sweep_every_s)
            await self.sweep(now)
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + timedelta(seconds=self.config.prune_every_s)
            await self.prune(now)
        if self._loaded_at is None or time.monotonic() - self._loaded_at >= self.config.device_refresh_s:
            await self.refresh_devices()

    async def sweep(self, now: datetime) -> int:
        """Mark silent devices offline; returns how many went offline."""
        async with self.ledger.transaction() as tx:
            gone, online = await health.sweep(tx.conn, tx.dialect, now, self.config.heartbeat_grace)
        self.metrics.devices_online.set(online)
        return gone

    async def prune(self, now: datetime, max_chunks: int = 10) -> int:
        """Forget dedup keys older than the retention (bounded work per call)."""
        cutoff = now - timedelta(seconds=self.config.dedup_retention_s)
        total = 0
        for _ in range(max_chunks):
            async with self.ledger.transaction() as tx:
                n = await dedup.prune(tx.conn, cutoff)
            total += n
            if n < dedup.PRUNE_CHUNK:
                break
        return total


def _signed(device: Device, raw: bytes) -> bool:
    """A native device's signed heartbeat on the status topic (rather than a status word)."""
    return device.format == "native" and raw.lstrip()[:1] == b"{" and b'"sig"' in raw


def _passage_row(pid: str, p: Passage, site_id: str, zone_id: str | None, lot: Lot | None,
                 outcome: str, now: datetime) -> dict[str, Any]:
    return {"site_id": site_id, "passage_id": pid, "device_id": p.device_id, "zone_id": zone_id,
            "epc": p.epc, "direction": p.direction, "first_seen": p.first_seen,
            "last_seen": p.last_seen, "reads": p.reads,
            "lot_id": lot.lot_id if lot else None, "facility_id": lot.facility_id if lot else None,
            "outcome": outcome, "closed_at": now}


class _Batch:
    """The writes of one batch transaction (classification, then SQL).

    Lock-light, so that gateways of a shared subscription (which Mosquitto deals one device's
    messages round robin) do not queue behind each other's batches:

    1. read the devices' states as last committed, without locking them;
    2. classify every observation against them (new, duplicate, late, stale), as the rules of
       docs/gateway.md say;
    3. claim the new keys (`dedup.claim`, INSERT ... ON CONFLICT DO NOTHING): a key that a
       concurrent batch claimed first is a duplicate (or, with other bytes, stale), exactly what
       the rules say had the two batches run one after the other;
    4. write the evidence of the claimed keys and the dead letters;
    5. only then lock the state rows (sorted) and merge into them: last_seq = max(stored, batch),
       liveness transitions against the state as it is now. The row locks are held from here
       to the commit only: two batches of the same devices overlap in everything but that.

    Why the unlocked read is enough: `last_seq` only grows, so a seq above the value read was
    never committed before the read; if a concurrent batch commits it, step 3 finds out. A seq
    at or below it is looked up, as before; its concurrent commit, again, is found in step 3.
    """

    def __init__(self, conn: Any, dialect: str, now: datetime, horizon: timedelta) -> None:
        self.conn = conn
        self.dialect = dialect
        self.now = now
        self.horizon = horizon
        self.done = Committed(now)
        self.evidence = EvidenceRows()
        self.candidates: list[tuple[_Item, list[Observation]]] = []  # classified new, unclaimed
        self.seen_rows: list[tuple[str, str, str | None]] = []
        self.late: set[tuple[str, str]] = set()  # keys accepted below the device's last seq
        self.liveness: list[tuple[str, str, str | None]] = []  # (device, source, offline detail)
        self.top_seq: dict[str, int] = {}  # device -> highest native seq claimed by this batch
        self.events: list[dict[str, Any]] = []
        self.letters: list[DeadLetter] = []

    async def write(self, items: Sequence[_Item]) -> Committed:
        good = [i for i in items if i.dead is None and i.device is not None]
        self.letters = [i.dead for i in items if i.dead is not None]
        devices = [(i.device.site_id, i.device.device_id) for i in good if i.device]
        snapshot = await health.read_states(self.conn, devices)
        ordered = sorted(good, key=lambda i: (i.device.device_id if i.device else "", i.seq()))
        known = await dedup.seen(self.conn, self._lookups(ordered, snapshot))
        taken: dict[tuple[str, str], str | None] = {}  # keys claimed earlier in this batch
        for item in ordered:
            self._classify(item, snapshot, known, taken)
        claimed = await dedup.claim(self.conn, self.seen_rows, self.now)
        await self._settle(claimed)
        await self.evidence.insert(self.conn)
        await insert_dead_letters(self.conn, self.letters)
        states = await health.lock_states(self.conn, self.dialect, devices)
        self._merge(states)
        await health.save_states(self.conn, list(states.values()), self.events)
        self.done.report.dead_letters.update(d.reason for d in self.letters)
        return self.done

    @staticmethod
    def _lookups(ordered: list[_Item], states: dict[str, health.DeviceState]) -> list[tuple[str, str]]:
        """Keys that may have been seen: every vendor key, and native keys at or below the
        device's high-water mark. Native keys above it are new by construction."""
        running = {d: s.last_seq for d, s in states.items()}
        keys = []
        for item in ordered:
            assert item.device is not None
            for o in item.observations:
                seq = _seq(o)
                last = running.get(item.device.device_id)
                if item.native and seq is not None and (last is None or seq > last):
                    running[item.device.device_id] = seq
                else:
                    keys.append((item.device.site_id, o.event_key))
        return keys

    def _classify(self, item: _Item, states: dict[str, health.DeviceState],
                  known: dict[tuple[str, str], str | None], taken: dict[tuple[str, str], str | None]) -> None:
        """Sort the item's observations into new (candidates to claim) and duplicates, or refuse
        it. `states` are the unlocked snapshot; their `last_seq` runs along the batch."""
        device = item.device
        assert device is not None
        state = states.get(device.device_id)
        if state is None:  # registered without a state row (should not happen): refuse, keep
            self._refuse(item, "unknown_device", "device has no state row")
            return
        digest = self._digest(item)
        fresh: list[Observation] = []
        for o in item.observations:
            key = (device.site_id, o.event_key)
            seq = _seq(o)
            if key in taken or key in known:
                before = taken[key] if key in taken else known[key]
                if digest is not None and before is not None and before != digest:
                    self._refuse(item, "stale_sequence",
                                 f"seq {seq} was already used by a different message")
                    return
                continue
            if item.native and seq is not None and state.last_seq is not None and seq <= state.last_seq:
                if self.now - o.at >= self.horizon:
                    self._refuse(item, "stale_sequence",
                                 f"seq {seq} is not above the last committed seq {state.last_seq}, "
                                 f"and its time {o.at.isoformat()} is beyond the dedup horizon")
                    return
                self.late.add(key)  # reordered (e.g. a shared subscription), and new
            fresh.append(o)
            taken[key] = digest
            if item.native and seq is not None:
                state.last_seq = seq if state.last_seq is None else max(state.last_seq, seq)
        for o in fresh:
            self.seen_rows.append((device.site_id, o.event_key, digest))
        self.candidates.append((item, fresh))

    async def _settle(self, claimed: set[tuple[str, str]]) -> None:
        """Apply the candidates whose keys this batch claimed; the keys a concurrent batch
        claimed first are duplicates, or stale when that batch's bytes differ."""
        lost = [(s, k) for s, k, _ in self.seen_rows if (s, k) not in claimed]
        theirs = await dedup.seen(self.conn, lost) if lost else {}
        for item, fresh in self.candidates:
            device = item.device
            assert device is not None
            digest = self._digest(item)
            mine: list[Observation] = []
            for o in fresh:
                key = (device.site_id, o.event_key)
                if key in claimed:
                    mine.append(o)
                    continue
                before = theirs.get(key)
                if digest is not None and before is not None and before != digest:
                    self._refuse(item, "stale_sequence",
                                 f"seq {_seq(o)} was already used by a different message")
                    break
            else:
                self._apply(item, device, mine)

    def _apply(self, item: _Item, device: Device, fresh: list[Observation]) -> None:
        report = self.done.report
        if item.status is not None:
            detail = "status message: offline" if item.status == "offline" else None
            self.liveness.append((device.device_id, "status", detail))
            report.committed += 1
            return
        if not item.observations:
            report.ignored += 1  # nothing to observe (e.g. an Impinj antenna event)
            return
        if not fresh:
            report.duplicates += 1
            return
        report.committed += 1
        source = "heartbeat" if any(isinstance(o, Heartbeat) for o in fresh) else "message"
        self.liveness.append((device.device_id, source, None))
        gate = device.kind == "rfid_gate"
        for o in fresh:
            if (device.site_id, o.event_key) in self.late:
                report.late += 1
            seq = _seq(o)
            if item.native and seq is not None:
                self.top_seq[device.device_id] = max(self.top_seq.get(device.device_id, seq), seq)
            self._evidence(o, device, gate)
            latest = self.done.latest_at
            self.done.latest_at = o.at if latest is None else max(latest, o.at)

    def _merge(self, states: dict[str, health.DeviceState]) -> None:
        """Fold the batch into the locked, current device states."""
        for device_id, seq in self.top_seq.items():
            state = states.get(device_id)
            if state is not None and (state.last_seq is None or seq > state.last_seq):
                state.last_seq = seq
                state.dirty = True
        for device_id, source, offline in self.liveness:
            state = states.get(device_id)
            if state is None:
                continue
            if offline is not None:
                state.offline(self.now, source, offline, self.events)
            else:
                state.seen(self.now, source, self.events)

    def _evidence(self, o: Observation, device: Device, gate: bool) -> None:
        site, zone = device.site_id, device.zone_id
        if isinstance(o, TagRead):
            self.evidence.read(o, site, zone, gate)
            if gate:
                self.done.gate_reads.append(o)
        elif isinstance(o, WeightSample):
            if o.stable:
                self.evidence.weight(o, site, zone)
        elif isinstance(o, CameraCount):
            self.evidence.camera(o, site, zone)
        elif isinstance(o, QuantityObservation):
            self.evidence.quantity(o, site, zone)
        # Heartbeat: liveness only (state.seen above).

    @staticmethod
    def _digest(item: _Item) -> str | None:
        return item.digest

    def _refuse(self, item: _Item, reason: str, detail: str) -> None:
        t, m = item.topic, item.message
        self.letters.append(DeadLetter.of(self.now, reason, m.topic, m.payload, detail,
                                          t.site if t else None, t.device if t else None))
