"""`pledge bench ingest`: the gateway's durable ingest rate against the broker's ceiling.

All in one run, against a real Mosquitto and PostgreSQL (a schema of its own, dropped at the
end; a site id of its own, so that its topics `pledge/v1/{site}/...` meet no other run):

(a) **ceiling**: a bare paho subscriber (its own process; MQTT 5, QoS 1, persistent session,
    manual ack right after receipt, no store) fed by the same publisher as (b). (a) and (b)
    alternate in `rounds` (3) slices each, both processes up throughout, each on a site of its
    own, so that the machine's drift weighs on both alike (`_side_by_side`).
(b) **durable rate**: `pledge gateway` as a subprocess, fed signed native `rfid.read` events of
    `devices` zone readers; an event counts once its evidence row is committed (the gateway
    acknowledges only after that commit).
(c) **latency** at a steady `latency_rate` (1,000 events/s), publisher paced.
(d) **scale-out**: two gateway processes in one `$share` group (PLEDGE_MQTT_SHARE_GROUP).
(e) **growth**: `history` (1,000,000) older events bulk-loaded (COPY) into `tag_read` and
    `seen_event` of 40 more zone readers of the same site, timestamps spread over the 6 days
    before now (inside the 7-day dedup retention, so none is pruned), then (b) again with a
    fresh gateway, in slices alternating with a twin on an empty store (a schema and a site of
    its own, its own gateway). growth_ratio = rate with the history / rate of the empty twin,
    measured side by side (`_grown_side_by_side`).
(f) **memory**: the highest VmHWM (/proc/<pid>/status) of every gateway process of the run.

Method.

* Publisher: `publishers` MQTT 5 connections on raw asyncio streams (QoS 1, the broker's
  Receive Maximum honoured), each device always on the same connection, so each device's `seq`
  reaches the broker in order. Payloads are encoded and signed before a phase's clock starts.
  Not paho: its `publish()` took ~70 % of a core here, CPU the consumers then lacked (`_Publishers`).
* Closed loop. Mosquitto queues at most `max_queued_messages` (1,000 by default) per client
  beyond its in-flight window (the client's Receive Maximum) and silently drops the excess
  (docs/mqtt.md; measured here with Receive Maximum 1,000: 2,000 of 2,500 unacknowledged
  messages kept), so an open-loop blast would lose messages, not measure anything. The
  publisher keeps at most `window` events outstanding (published, not yet seen committed).
  What the broker holds for a gateway is those plus the messages committed but not yet
  acknowledged (at most the batches in its pipeline, 2 x 500), and it drops once that reaches
  Receive Maximum + 1,000: so window + 1,000 must stay below Receive Maximum + 1,000. With
  the old 1,000 / 1,000 it sat exactly on that edge and lost 158-362 messages in some runs.
  The default window is Receive Maximum - 1,000 (4,000 of 5,000). The pair of (d) shares one
  window: Mosquitto deals a share group's messages round robin, whatever each member's
  backlog. Progress is polled every 10 ms: the bare subscriber prints its count; for
  gateways, the `tag_read` rows committed since the phase began, never more (`_Progress`:
  `max(read_id)` ran ahead of the commits while pipelined batches committed out of id order).
* Rates are windowed: exact counts (the subscriber's count; `count(*)` of the phase's
  `tag_read` rows) at `warmup_s` and at the end of the phase, divided by the time between the
  two samples. Afterwards every published event must arrive: the phase drains and a shortfall
  is printed as lost.
* Latency: each event's `ts` is the wall-clock time at which it is handed to paho (encoded on
  the fly; signing costs ~5 microseconds); `tag_read.at` stores that `ts`. A poller selects the
  new `tag_read` rows every `poll_ms` (5) and takes the wall time just before its query as the
  commit time of the rows it sees: a row committed after the previous query's snapshot and
  before this one. So each latency is an upper bound, at most `poll_ms` above the true
  publish-to-commit time (and at most the query's network hop, ~0.1 ms, below it). Events of
  the first `warmup_s` are not counted.
* Each phase line also shows the consumers' CPU time per event (user + system, psutil) over the
  measured window, and under it the machine's census (`ledger/machine_load.py`): busy cores,
  and per process group the cores used and the time queued for a core. (e) times a dedup
  lookup (`gateway.dedup.seen`) and a prune pass before and after the load: the dedup table is
  pruned by age, so what matters is that neither grows with the stored history.
* The encoder: `encode_event` costs ~44 microseconds per event, which would make pre-encoding
  a few hundred thousand events slower than the phases themselves. `_ZoneReader` writes the same
  canonical bytes from a template (~5 microseconds) and proves it against `encode_event` for
  every device when it is built; a drift would also show as dead letters, which the bench
  counts (it must be 0).

The last line reads
`ingest_ratio=<r> events_per_s=<n> p99_ms=<ms> scale2_ratio=<r> growth_ratio=<r> peak_rss_mb=<n>`
with ingest_ratio = (b)/(a), events_per_s = (b), scale2_ratio = (d)/(b), growth_ratio = (e)/(the
same on an empty store, side by side).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from rich.console import Console
from sqlalchemy import text

from gateway import dedup
from gateway.formats.native import encode_event
from gateway.mqtt import RECEIVE_MAXIMUM, MqttConfig, discard_session, parse_mqtt_url
from gateway.registry import DeviceRegistry, DeviceSpec
from gateway.topics import events_topic
from ledger.core.reference import Site, Zone
from ledger.heap import freeze_startup_heap
from ledger.machine_load import CpuShare, MachineLoad, by_name
from ledger.service import LedgerService
from ledger.store.checkpoint import checkpoint
from ledger.store.engine import create_engine
from ledger.store.sql import PostgresStore
from migrations import migrate

__all__ = ["IngestBenchOptions", "run_ingest_bench"]

_HISTORY_DEVICES = 40
_TAGS_PER_READER = 5_000
_POLL_S = 0.01  # flow-control progress poll
_CHUNK = 200  # events published per turn of the closed loop
_STALL_S = 15.0  # a drain without progress for this long: the rest is lost
_BROKER_QUEUE = 1000  # Mosquitto's max_queued_messages by default: queued beyond the window


@dataclass(frozen=True, slots=True)
class IngestBenchOptions:
    """Phase lengths in seconds, counts of events, devices and connections."""

    bare_s: float = 10.0  # (a)
    rate_s: float = 15.0  # (b), (d) and (e), each
    latency_s: float = 15.0  # (c)
    latency_rate: float = 1000.0  # events/s during (c)
    history: int = 1_000_000  # (e)
    devices: int = 8  # zone readers publishing
    publishers: int = 4  # paho connections of the publisher
    receive_maximum: int = RECEIVE_MAXIMUM  # PLEDGE_MQTT_RECEIVE_MAXIMUM of gateways and bare client
    window: int | None = None  # events outstanding (published, not seen committed); None: see below
    warmup_s: float = 2.0  # not measured at the start of each phase
    poll_ms: float = 5.0  # latency poller period
    max_rate: float = 30_000.0  # events/s the pre-encoded pool of (a) is sized for
    rounds: int = 3  # (a) and (b) alternate in this many slices each

    @property
    def effective_window(self) -> int:
        """`window`, or by default what keeps the broker off its drop line (module doc)."""
        return self.window if self.window is not None else max(1, self.receive_maximum - _BROKER_QUEUE)


# --------------------------------------------------------------------------- devices


def _ts(at: datetime) -> str:
    """`ts` exactly as encode_event writes a datetime."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _ZoneReader:
    """A native zone reader signing `rfid.read` events like the firmware (`encode_event`),
    from a template. Proven byte-equal to `encode_event` when built."""

    def __init__(self, site_id: str, device_id: str, index: int, secret: bytes, seq: int = 0) -> None:
        self.device_id = device_id
        self.topic = events_topic(site_id, device_id)
        self.index = index
        self.seq = seq
        self.secret = secret
        sample_at = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)
        epc, antenna, rssi = self._read(7)
        expected = encode_event(device_id, 7, sample_at, "rfid.read",
                                {"epc": epc, "antenna": antenna, "rssi_dbm": Decimal(rssi)}, secret)
        if self.encode(7, _ts(sample_at)) != expected:
            raise RuntimeError("the bench's native template no longer matches encode_event")

    def _read(self, seq: int) -> tuple[str, int, str]:
        tag = (seq * 7919) % _TAGS_PER_READER
        return f"E280{self.index:04X}{tag:016X}", 1 + seq % 4, f"-{40 + seq % 40}.{1 + seq % 9}"

    def encode(self, seq: int, ts: str) -> bytes:
        epc, antenna, rssi = self._read(seq)
        body = f'{{"antenna":{antenna},"epc":"{epc}","rssi_dbm":{rssi}}}'
        head = f'{{"body":{body},"device_id":"{self.device_id}","seq":{seq},'
        tail = f'"ts":"{ts}","type":"rfid.read"}}'
        sig = hmac.new(self.secret, (head + tail).encode(), hashlib.sha256).hexdigest()
        return f'{head}"sig":"{sig}",{tail}'.encode()

    def next(self, at: datetime) -> bytes:
        self.seq += 1
        return self.encode(self.seq, _ts(at))


_Event = tuple[int, str, bytes]  # (publisher connection, topic, payload)


def _pool(readers: Sequence[_ZoneReader], count: int, publishers: int) -> list[_Event]:
    """`count` events, round robin over the readers, stamped now."""
    ts = _ts(datetime.now(UTC))
    out: list[_Event] = []
    n = len(readers)
    for k in range(count):
        r = readers[k % n]
        r.seq += 1
        out.append((r.index % publishers, r.topic, r.encode(r.seq, ts)))
    return out


# --------------------------------------------------------------------------- publisher


def _paho(url: str, client_id: str, *, manual_ack: bool) -> tuple[Client, str, int]:
    address = parse_mqtt_url(url)
    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5, manual_ack=manual_ack)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        import ssl

        client.tls_set_context(ssl.create_default_context())
    return client, address.host, address.port


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


async def _read_packet(r: asyncio.StreamReader) -> tuple[int, bytes]:
    """One MQTT control packet: (first byte, the rest after the remaining length)."""
    first = (await r.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        digit = (await r.readexactly(1))[0]
        length += (digit & 0x7F) << shift
        shift += 7
        if not digit & 0x80:
            break
    return first, await r.readexactly(length)


class _Connection:
    """One MQTT 5 publisher connection on raw asyncio streams: clean start, QoS 1, the broker's
    Receive Maximum honoured (PUBLISHes beyond it wait for a PUBACK). Packets written in one
    `write` per turn of the event loop; a refused PUBACK or a lost connection is raised by the
    next `publish`."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, receive_maximum: int,
                 keepalive: int) -> None:
        self.r, self.w = r, w
        self.limit = receive_maximum
        self.inflight = 0
        self.waiting: deque[bytes] = deque()
        self.out = bytearray()
        self.flushing = False
        self.mid = 0
        self.topics: dict[str, bytes] = {}
        self.error: BaseException | None = None
        self.tasks = [asyncio.create_task(self._acks())]
        if keepalive:
            self.tasks.append(asyncio.create_task(self._pings(keepalive)))

    @classmethod
    async def open(cls, url: str, client_id: str) -> _Connection:
        address = parse_mqtt_url(url)
        tls = None
        if address.tls:
            import ssl

            tls = ssl.create_default_context()
        r, w = await asyncio.open_connection(address.host, address.port, ssl=tls)
        flags = 0x02  # clean start
        flags |= (0x80 if address.username is not None else 0) | (0x40 if address.password is not None else 0)
        body = _utf8("MQTT") + bytes([5, flags]) + b"\x00\x00" + b"\x00" + _utf8(client_id)
        body += _utf8(address.username) if address.username is not None else b""
        body += _utf8(address.password) if address.password is not None else b""
        w.write(b"\x10" + VariableByteIntegers.encode(len(body)) + body)  # CONNECT, keepalive 0
        first, ack = await _read_packet(r)
        if first != 0x20 or len(ack) < 2 or ack[1] != 0:
            w.close()
            raise RuntimeError(f"publisher {client_id}: CONNACK refused ({first:#x}, {ack[:2].hex()})")
        props = Properties(PacketTypes.CONNACK)
        props.unpack(ack[2:])
        return cls(r, w, getattr(props, "ReceiveMaximum", 65535), getattr(props, "ServerKeepAlive", 0))

    def publish(self, topic: str, payload: bytes) -> None:
        if self.error is not None:
            raise RuntimeError(f"publisher connection failed: {self.error!r}")
        prefix = self.topics.get(topic)
        if prefix is None:
            prefix = self.topics[topic] = _utf8(topic)
        self.mid = self.mid % 65535 + 1
        body = b"".join((prefix, self.mid.to_bytes(2, "big"), b"\x00", payload))
        packet = b"\x32" + VariableByteIntegers.encode(len(body)) + body  # PUBLISH, QoS 1, no properties
        if self.inflight < self.limit:
            self.inflight += 1
            self._send(packet)
        else:
            self.waiting.append(packet)

    def _send(self, packet: bytes) -> None:
        self.out += packet
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        if self.out and not self.w.is_closing():
            self.w.write(bytes(self.out))
        self.out.clear()

    async def _acks(self) -> None:
        try:
            while True:
                first, body = await _read_packet(self.r)
                if first >> 4 == 4:  # PUBACK: packet id, then a reason code if not success
                    if len(body) > 2 and body[2] >= 0x80:
                        raise RuntimeError(f"PUBACK refused with reason code {body[2]:#x}")
                    self.inflight -= 1
                    if self.waiting:
                        self.inflight += 1
                        self._send(self.waiting.popleft())
                elif first >> 4 == 14:
                    raise RuntimeError(f"broker sent DISCONNECT {body[:1].hex()}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # kept for the next publish to raise
            self.error = e

    async def _pings(self, keepalive: int) -> None:
        while True:
            await asyncio.sleep(keepalive / 2)
            self._send(b"\xc0\x00")

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        if not self.w.is_closing():
            self._flush()
            self.w.write(b"\xe0\x00")  # DISCONNECT, normal
            self.w.close()


class _Publishers:
    """`n` publisher connections (MQTT 5, QoS 1, clean start) on raw asyncio streams. paho's
    `publish()` costs ~100 us of Python per message (and its network thread competes for the
    GIL): on this 2-core machine the publisher took ~70 % of a core, CPU that the consumers it
    feeds then lacked, most of all the two gateways of (d). These connections write prebuilt
    packets, like the HTTP bench's minimal client (api/bench.py)."""

    def __init__(self, url: str, n: int, run: str) -> None:
        self.url, self.n, self.run = url, n, run
        self.clients: list[_Connection] = []

    async def wait_connected(self, timeout: float = 10.0) -> None:
        for i in range(self.n):
            conn = _Connection.open(self.url, f"bench-{self.run}-pub{i}")
            self.clients.append(await asyncio.wait_for(conn, timeout))

    def publish(self, event: _Event) -> None:
        self.clients[event[0]].publish(event[1], event[2])

    def close(self) -> None:
        for c in self.clients:
            c.close()


# --------------------------------------------------------------------------- consumers


def _bare_subscriber(url: str, client_id: str, topic_filter: str, receive_maximum: int) -> None:
    """(a), in its own process: receive, acknowledge at once, count; print the count every 10 ms
    ("ready" once subscribed) until SIGTERM."""
    client, host, port = _paho(url, client_id, manual_ack=True)
    received = 0

    def on_message(c: Client, _userdata: Any, m: MQTTMessage) -> None:
        nonlocal received
        received += 1
        c.ack(m.mid, m.qos)

    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda *_a: print("ready", flush=True)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = receive_maximum
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    client.connect(host, port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    while not stop.wait(0.01):
        print(received, flush=True)
    client.disconnect()
    client.loop_stop()
    print(received, flush=True)


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


class _BareProcess:
    """The bare subscriber's process and its last reported count."""

    def __init__(self, url: str, client_id: str, topic_filter: str, receive_maximum: int) -> None:
        self.args = [sys.executable, "-m", "gateway.bench", "bare", url, client_id, topic_filter,
                     str(receive_maximum)]
        self.count = 0
        self.ready = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 20.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=subprocess.PIPE)
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            word = line.strip()
            if word == b"ready":
                self.ready.set()
            elif word.isdigit():
                self.count = int(word)

    async def counted(self) -> int:
        return self.count

    def counter(self) -> Callable[[], Awaitable[int]]:
        """A count of what arrives from now on (the subscriber reports its total)."""
        base = self.count

        async def since() -> int:
            return self.count - base

        return since

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid if self.proc is not None else None)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 15)
        if self._reader is not None:
            await self._reader


class _GatewayProcess:
    """`pledge gateway` in its own process, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_mb = 0.0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "gateway"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "gateway ready" not in self.log.read_text(errors="replace"):
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not get ready:\n" + self.tail())
            await asyncio.sleep(0.05)

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid if self.proc is not None else None)

    def sample_rss(self) -> float:
        """VmHWM (peak resident set) of the process so far, in MB."""
        if self.proc is not None and self.proc.poll() is None:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)
        return self.peak_rss_mb

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.sample_rss()
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


class _Db:
    """The bench's own asyncpg connection to the run's schema: progress, counts, latency."""

    def __init__(self, conn: Any, site_id: str) -> None:
        self.conn = conn
        self.site_id = site_id

    async def max_read_id(self) -> int:
        return int(await self.conn.fetchval("SELECT coalesce(max(read_id), 0) FROM tag_read"))

    async def reads_since(self, read_id: int) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM tag_read WHERE read_id > $1", read_id))

    async def counts_above(self, read_id: int, mark: int) -> tuple[int, int, int]:
        """Rows with read_id > `read_id`: how many up to `mark`, how many in all, the top id."""
        r = await self.conn.fetchrow(
            "SELECT count(*) FILTER (WHERE read_id <= $2), count(*), coalesce(max(read_id), $1)"
            " FROM tag_read WHERE read_id > $1", read_id, mark)
        return int(r[0]), int(r[1]), int(r[2])

    async def reads_between(self, low: int, high: int) -> int:
        return int(await self.conn.fetchval(
            "SELECT count(*) FROM tag_read WHERE read_id > $1 AND read_id <= $2", low, high))

    async def new_reads(self, read_id: int) -> list[Any]:
        # LIMIT keeps the prepared (generic) plan on the primary key: without it PostgreSQL may
        # plan a scan of the whole table, 200 times a second, on the gateway's two cores.
        return list(await self.conn.fetch(
            "SELECT read_id, at FROM tag_read WHERE read_id > $1 ORDER BY read_id LIMIT 10000", read_id))

    async def dead_letters(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM dead_letter"))

    async def last_seqs(self) -> dict[str, int]:
        rows = await self.conn.fetch("SELECT device_id, last_seq FROM device_state WHERE site_id = $1",
                                     self.site_id)
        return {r["device_id"]: int(r["last_seq"] or 0) for r in rows}


# --------------------------------------------------------------------------- phases


@dataclass
class _Phase:
    rate: float  # events/s over the measured window
    sent: int
    arrived: int
    window_s: float
    ran_out: bool  # the pool ended before the phase did (the window was shorter)
    cpu_us: float  # the consumers' CPU time per event over the window, microseconds
    machine: CpuShare | None = None  # the machine's busy cores over the window, by process group

    @property
    def lost(self) -> int:
        return self.sent - self.arrived


async def _timed(count: Callable[[], Awaitable[int]]) -> tuple[int, float]:
    t0 = time.monotonic()
    n = await count()
    return n, (t0 + time.monotonic()) / 2


async def _drive(
    pubs: _Publishers,
    pool: Sequence[_Event],
    progress: Callable[[], Awaitable[int]],
    exact: Callable[[], Awaitable[int]],
    cpu: Callable[[], float],
    seconds: float,
    warmup_s: float,
    window: int,
    census: MachineLoad | None = None,
) -> _Phase:
    """Publish `pool` in a closed loop (at most `window` outstanding) for `seconds`; the rate is
    measured by `exact` between `warmup_s` and the end, the consumers' `cpu` seconds and the
    machine's `census` likewise. Then drain."""
    freeze_startup_heap()  # the load generator's own collections (ledger/heap.py)
    sent = done = 0
    start = time.monotonic()
    next_poll = start
    first: tuple[int, float] | None = None
    cpu_first = cpu()
    while True:
        now = time.monotonic()
        if first is None and now - start >= warmup_s:
            first, cpu_first = await _timed(exact), cpu()
            if census is not None:
                census.start()
        if now - start >= seconds or sent >= len(pool):
            break
        if now >= next_poll:
            done = await progress()
            next_poll = now + _POLL_S
        room = min(window - (sent - done), _CHUNK, len(pool) - sent)
        if room > 0:
            for k in range(sent, sent + room):
                pubs.publish(pool[k])
            sent += room
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.001)
    ran_out = sent >= len(pool) and time.monotonic() - start < seconds
    last, cpu_last = await _timed(exact), cpu()
    machine = census.stop() if census is not None and first is not None else None
    if first is None or last[1] - first[1] <= 0:
        first = (0, start)
    events = last[0] - first[0]
    rate = events / (last[1] - first[1])
    cpu_us = (cpu_last - cpu_first) / max(events, 1) * 1e6
    arrived = await _drain(progress, exact, sent)
    return _Phase(rate, sent, arrived, last[1] - first[1], ran_out, cpu_us, machine)


async def _drain(progress: Callable[[], Awaitable[int]], exact: Callable[[], Awaitable[int]],
                 sent: int) -> int:
    """Wait until `sent` events arrived, or nothing moved for _STALL_S; returns how many did
    (the cheap progress first, then the exact count)."""
    seen, moved = -1, time.monotonic()
    while True:
        n = await progress()
        if n >= sent and (n := await exact()) >= sent:
            return n
        if n != seen:
            seen, moved = n, time.monotonic()
        elif time.monotonic() - moved > _STALL_S:
            return await exact()
        await asyncio.sleep(0.02)


async def _latency(pubs: _Publishers, readers: Sequence[_ZoneReader], db: _Db,
                   options: IngestBenchOptions) -> list[float]:
    """(c): paced publishing, each event stamped when handed to paho; commit seen by polling.
    Returns the latencies (ms) of the events published after the warm-up."""
    freeze_startup_heap()  # the load generator's own collections (ledger/heap.py)
    n, publishers = len(readers), len(pubs.clients)
    cursor = _Cursor(await db.max_read_id())
    counted_from = datetime.now(UTC) + timedelta(seconds=options.warmup_s)
    total = math.ceil(options.latency_s * options.latency_rate)
    latencies: list[float] = []
    published = seen = 0

    async def poll() -> None:
        nonlocal seen
        observed = time.time()  # just before the query's snapshot: see the module doc
        for r in cursor.new(await db.new_reads(cursor.below), observed):
            seen += 1
            if r["at"] >= counted_from:
                latencies.append((observed - r["at"].timestamp()) * 1000)

    start = time.monotonic()
    next_poll = start
    while published < total:
        due = min(total, int((time.monotonic() - start) * options.latency_rate) + 1)
        while published < due:
            r = readers[published % n]
            pubs.publish((r.index % publishers, r.topic, r.next(datetime.now(UTC))))
            published += 1
        if time.monotonic() >= next_poll:
            next_poll = time.monotonic() + options.poll_ms / 1000
            await poll()
        await asyncio.sleep(0.0005)
    moved, before = time.monotonic(), seen
    while seen < published and time.monotonic() - moved < _STALL_S:
        await asyncio.sleep(options.poll_ms / 1000)
        await poll()
        if seen != before:
            moved, before = time.monotonic(), seen
    if seen < published:
        raise RuntimeError(f"latency phase: only {seen} of {published} events were committed")
    return latencies


class _Progress:
    """How many `tag_read` rows committed since `base`: never more than did (flow control).

    `max(read_id) - base` is cheap but runs ahead: pipelined batches take interleaved ids and
    commit out of order, so the top id is often a batch's whose elders are still committing,
    and a publisher trusting it overshoots the broker's queue (Mosquitto then drops messages).
    Rows are counted instead, above a watermark that follows the top id seen `settle_s`
    earlier, by when every transaction that took a lower id has committed or rolled back; the
    rows under it are counted once, when it moves, and recounted every `recount_s` so that a
    commit later than `settle_s` is not missed for good. Between recounts such a commit is
    undercounted: that only holds the publisher back, never lets it overshoot."""

    def __init__(self, db: _Db, base: int, settle_s: float = 0.25, recount_s: float = 1.0) -> None:
        self.db, self.base = db, base
        self.settle_s, self.recount_s = settle_s, recount_s
        self.mark = base  # rows with base < read_id <= mark: `under` of them
        self.under = 0
        self._tops: deque[tuple[float, int]] = deque()  # (when, top id seen)
        self._recount_at = time.monotonic() + recount_s

    async def __call__(self) -> int:
        now = time.monotonic()
        if now >= self._recount_at:
            self.under = await self.db.reads_between(self.base, self.mark)
            self._recount_at = now + self.recount_s
        target = self.mark
        while self._tops and now - self._tops[0][0] >= self.settle_s:
            target = max(target, self._tops.popleft()[1])
        up_to_target, above, top = await self.db.counts_above(self.mark, target)
        done = self.under + above
        self.mark, self.under = target, self.under + up_to_target
        self._tops.append((now, top))
        return done


class _Cursor:
    """Which committed `tag_read` rows a poll has not seen yet.

    A gateway commits up to PLEDGE_GATEWAY_PIPELINE batches at once, so a row can become
    visible after rows with higher ids (its batch took its ids first and committed last): a
    plain `read_id > last` cursor would skip it for good. `below` only passes ids seen, or ids
    missing for `gap_s` below seen ones (a rolled-back insert: no commit will bring them)."""

    def __init__(self, below: int, gap_s: float = 2.0) -> None:
        self.below = below  # every id <= below is seen or given up
        self.gap_s = gap_s
        self._above: set[int] = set()  # ids above `below` already seen
        self._missing_since: dict[int, float] = {}

    def new(self, rows: Sequence[Any], now: float) -> list[Any]:
        """The rows (id > below, as polled at time `now`) not seen before; moves `below` on."""
        fresh = [r for r in rows if r["read_id"] not in self._above]
        self._above.update(r["read_id"] for r in fresh)
        while self._above:
            nxt = self.below + 1
            if nxt in self._above:
                self._above.discard(nxt)
                self._missing_since.pop(nxt, None)
            elif now - self._missing_since.setdefault(nxt, now) > self.gap_s:
                del self._missing_since[nxt]
            else:
                break
            self.below = nxt
        return fresh


def _percentile(xs: Sequence[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --------------------------------------------------------------------------- the store


async def _world(store: PostgresStore, site_id: str, zone_id: str, devices: int) -> dict[str, bytes]:
    """The bench site and zone, `devices` native zone readers (returned with their secrets) and
    the history's readers."""
    clock = lambda: datetime.now(UTC)  # noqa: E731
    ledger = LedgerService(store, clock)
    await ledger.add(Site(site_id, "ingest bench site"))
    await ledger.add(Zone(zone_id, site_id, "ingest bench hall"))
    registry = DeviceRegistry(store, clock)
    keys: dict[str, bytes] = {}
    for i in range(devices):
        device_id, key = f"zr-{i:02d}", secrets.token_bytes(32)
        await registry.register(DeviceSpec(device_id, site_id, zone_id, "rfid_zone", "native",
                                           key.hex(), {}, 3600))
        keys[device_id] = key
    for i in range(_HISTORY_DEVICES):
        await registry.register(DeviceSpec(f"hz-{i:02d}", site_id, zone_id, "rfid_zone", "native",
                                           None, {}, 3600))
    return keys


_READ_COLUMNS = ["site_id", "zone_id", "device_id", "at", "epc", "event_key", "antenna", "rssi_dbm",
                 "direction", "gate", "passage_id"]
_SEEN_COLUMNS = ["site_id", "event_key", "seen_at", "digest"]


async def _load_history(conn: Any, site_id: str, zone_id: str, count: int) -> str:
    """`count` committed zone reads of the history readers, oldest 6 days ago, newest now:
    evidence rows, their dedup keys (inside the 7-day retention) and the readers' last seq."""
    now = datetime.now(UTC)
    start, step = now - timedelta(days=6), timedelta(days=6) / max(count, 1)
    devices = [f"hz-{i:02d}" for i in range(_HISTORY_DEVICES)]
    seqs = [0] * _HISTORY_DEVICES
    last_at: list[datetime | None] = [None] * _HISTORY_DEVICES
    reads: list[tuple[Any, ...]] = []
    seen: list[tuple[Any, ...]] = []
    for n in range(count):
        d = n % _HISTORY_DEVICES
        seqs[d] += 1
        at = last_at[d] = start + step * n
        key = f"{devices[d]}:{seqs[d]}"
        epc = f"E280{0xF000 + d:04X}{(n * 7919) % 50_000:016X}"
        reads.append((site_id, zone_id, devices[d], at, epc, key, 1 + n % 4,
                      Decimal(f"-{40 + n % 40}.5"), None, False, None))
        seen.append((site_id, key, at + timedelta(milliseconds=40),
                     hashlib.sha256(key.encode()).hexdigest()))
        if len(reads) == 100_000 or n == count - 1:
            await conn.copy_records_to_table("tag_read", records=reads, columns=_READ_COLUMNS)
            await conn.copy_records_to_table("seen_event", records=seen, columns=_SEEN_COLUMNS)
            reads, seen = [], []
    for d, device_id in enumerate(devices):
        if seqs[d]:
            await conn.execute("UPDATE device_state SET last_seq = $2, last_seen_at = $3 "
                               "WHERE device_id = $1", device_id, seqs[d], last_at[d])
    # What autovacuum would have done to a table that grew this way; then a checkpoint, so that
    # the load's WAL is not flushed during the measured phase.
    await conn.execute("VACUUM ANALYZE tag_read")
    await conn.execute("VACUUM ANALYZE seen_event")
    return await checkpoint(conn)


async def _dedup_probe(store: PostgresStore, keys: list[tuple[str, str]]) -> tuple[float, float]:
    """Median ms of a dedup lookup of `keys` (gateway.dedup.seen) and of one prune call."""
    lookups, prunes = [], []
    cutoff = datetime.now(UTC) - timedelta(days=7)
    for _ in range(5):
        t0 = time.perf_counter()
        async with store.transaction() as tx:
            found = await dedup.seen(tx.conn, keys)
        lookups.append((time.perf_counter() - t0) * 1000)
        if len(found) != len(set(keys)):
            raise RuntimeError(f"dedup probe found {len(found)} of {len(set(keys))} keys")
        t0 = time.perf_counter()
        async with store.transaction() as tx:
            await dedup.prune(tx.conn, cutoff)
        prunes.append((time.perf_counter() - t0) * 1000)
    return sorted(lookups)[2], sorted(prunes)[2]


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """What the phases share."""

    options: IngestBenchOptions
    database_url: str
    mqtt_url: str
    schema: str
    site_id: str
    tmp: Path
    pubs: _Publishers
    db: _Db
    readers: list[_ZoneReader]
    console: Console
    run_id: str
    gateways: list[_GatewayProcess]
    client_ids: list[str]

    def gateway(self, share_group: str | None = None) -> _GatewayProcess:
        client_id = f"bench-{self.run_id}-gw{len(self.gateways)}"
        env = {k: v for k, v in os.environ.items() if k != "PLEDGE_MQTT_SHARE_GROUP"}
        env.update({
            "PLEDGE_DATABASE_URL": self.database_url, "PLEDGE_DATABASE_SCHEMA": self.schema,
            "PLEDGE_MQTT_URL": self.mqtt_url, "PLEDGE_MQTT_CLIENT_ID": client_id,
            "PLEDGE_MQTT_SITES": self.site_id, "PLEDGE_METRICS_PORT": "0",
            "PLEDGE_MQTT_RECEIVE_MAXIMUM": str(self.options.receive_maximum)})
        if share_group:
            env["PLEDGE_MQTT_SHARE_GROUP"] = share_group
        g = _GatewayProcess(env, self.tmp / f"{client_id}.log")
        self.gateways.append(g)
        self.client_ids.append(client_id)
        return g

    async def retire(self, *gateways: _GatewayProcess) -> None:
        """Stop gateways and make the broker forget their sessions (or it would queue every
        later phase's messages for them)."""
        for g in gateways:
            await g.stop()
            await discard_session(MqttConfig(self.mqtt_url, g.env["PLEDGE_MQTT_CLIENT_ID"]))

    async def resync(self) -> None:
        """Readers continue from their devices' committed seq (a pool only partly published
        leaves the readers ahead of it)."""
        last = await self.db.last_seqs()
        for r in self.readers:
            r.seq = last.get(r.device_id, 0)

    async def gateway_phase(self, pool_rate: float, window: int, seconds: float | None = None,
                            warmup_s: float | None = None) -> _Phase:
        """The running gateways fed for `seconds` (the options' rate_s by default), of which the
        first `warmup_s` are not measured."""
        await self.resync()
        o = self.options
        seconds = o.rate_s if seconds is None else seconds
        warmup_s = o.warmup_s if warmup_s is None else warmup_s
        pool = _pool(self.readers, int(pool_rate * seconds) + window, o.publishers)
        base_id = await self.db.max_read_id()

        progress = _Progress(self.db, base_id)

        async def exact() -> int:
            return await self.db.reads_since(base_id)

        running = [g for g in self.gateways if g.proc is not None and g.proc.poll() is None
                   and g.env["PLEDGE_DATABASE_SCHEMA"] == self.schema]
        census = _census({g.proc.pid: "gateways" for g in running if g.proc is not None}, "gateways")
        phase = await _drive(self.pubs, pool, progress, exact,
                             lambda: sum(g.cpu_s() for g in running), seconds, warmup_s, window, census)
        for g in running:
            g.sample_rss()
        return phase


def _describe(label: str, p: _Phase) -> str:
    notes = []
    if p.lost:
        notes.append(f"[red]LOST {p.lost} of {p.sent}[/]")
    if p.ran_out:
        notes.append("pool ran out: shorter window")
    extra = f" ({'; '.join(notes)})" if notes else ""
    machine = f"\n    machine: {p.machine.line()}" if p.machine is not None else ""
    return (f"{label}: {p.rate:,.0f} events/s over {p.window_s:.1f} s, {p.sent:,} published, "
            f"consumer CPU {p.cpu_us:.0f} us/event{extra}{machine}")


def _census(consumers: dict[int, str], group: str) -> MachineLoad:
    """Where a phase's CPU goes: the consumers, this process (the publisher), the broker and
    PostgreSQL (by process name, on this machine)."""
    pids = {**consumers, os.getpid(): "publisher"}
    names = {"mosquitto": "mosquitto", "postgres": "postgres"}
    return MachineLoad(by_name(pids, names), [group, "publisher", "mosquitto", "postgres"])


async def run_ingest_bench(database_url: str, mqtt_url: str, options: IngestBenchOptions,
                           console: Console) -> None:
    """Run every phase (module doc) and print the figures; the last line is the summary."""
    run_id = uuid.uuid4().hex[:10]
    pubs: _Publishers | None = None
    tmp = tempfile.TemporaryDirectory(prefix="pledge-bench-ingest-")
    try:
        async with _bench_site(database_url, f"bench_{run_id}", f"BI{run_id}", options.devices) as site:
            pubs = _Publishers(mqtt_url, options.publishers, run_id)
            await pubs.wait_connected()
            bench = _Run(options, database_url, mqtt_url, site.schema, site.site_id, Path(tmp.name), pubs,
                         site.db, site.readers, console, run_id, [], [])
            try:
                await _phases(bench, site.store)
            finally:  # before the schema goes: the gateways write to it
                for g in bench.gateways:
                    with contextlib.suppress(Exception):
                        await g.stop()
                for client_id in bench.client_ids:
                    with contextlib.suppress(Exception):
                        await discard_session(MqttConfig(mqtt_url, client_id))
    finally:
        if pubs is not None:
            pubs.close()
        tmp.cleanup()


@dataclass
class _Site:
    """A bench site in a schema of its own: the store, the bench's own connection, the readers."""

    schema: str
    site_id: str
    store: PostgresStore
    db: _Db
    readers: list[_ZoneReader]


@contextlib.asynccontextmanager
async def _bench_site(database_url: str, schema: str, site_id: str, devices: int) -> AsyncIterator[_Site]:
    """Create `schema` at head, the site with `devices` zone readers; drop it all afterwards."""
    import asyncpg

    admin = create_engine(database_url)
    async with admin.begin() as c:
        await c.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(database_url, schema=schema)
    store = PostgresStore(engine)
    conn: Any = None
    try:
        await migrate(engine)
        keys = await _world(store, site_id, f"{site_id}-Z", devices)
        # The bench's own probes poll tag_read by primary-key range ~100 times a second while
        # the table grows far faster than autovacuum analyses it: planned from stale statistics
        # a range count became a scan of the whole table, whose cost grew with every phase and
        # took PostgreSQL's CPU from the gateway. Index scans only, on this connection.
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"),
                                     server_settings={"search_path": schema, "enable_seqscan": "off"})
        readers = [_ZoneReader(site_id, d, i, k) for i, (d, k) in enumerate(keys.items())]
        yield _Site(schema, site_id, store, _Db(conn, site_id), readers)
    finally:
        if conn is not None:
            await conn.close()
        await store.close()
        async with admin.begin() as c:
            await c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


async def _phases(b: _Run, store: PostgresStore) -> None:
    o = b.options
    b.console.print(f"site {b.site_id}, schema {b.schema}: {o.devices} zone readers, "
                    f"{o.publishers} publisher connections, window {o.effective_window}, "
                    f"Receive Maximum {o.receive_maximum}")
    b.console.print(await checkpoint(b.db.conn))
    a, one, p99 = await _side_by_side(b)
    pool_rate = max(a.rate, o.latency_rate) * 1.25  # a gateway cannot outrun the ceiling
    # the pair may outrun the bare subscriber: events for 1.6 x one gateway (the target is 1.5 x),
    # or its window is cut short when the pool runs out
    pair = await _two_gateways(b, max(pool_rate, 1.6 * one.rate))
    grown, empty = await _grown(b, store, pool_rate)
    peak = max(g.peak_rss_mb for g in b.gateways)
    dead = await b.db.dead_letters()
    lost = a.lost + one.lost + pair.lost + grown.lost + empty.lost
    peaks = ", ".join(f"{g.peak_rss_mb:.0f}" for g in b.gateways)
    b.console.print(f"(f) peak RSS of the gateway processes: {peaks} MB; dead letters {dead}; lost {lost}")
    b.console.print(
        f"ingest_ratio={one.rate / a.rate:.2f} events_per_s={one.rate:.0f} p99_ms={p99:.1f} "
        f"scale2_ratio={pair.rate / one.rate:.2f} growth_ratio={grown.rate / empty.rate:.2f} "
        f"peak_rss_mb={peak:.0f}")


async def _side_by_side(b: _Run) -> tuple[_Phase, _Phase, float]:
    """(a) and (b) in alternating slices, `rounds` of each, then (c); returns (a), (b), p99 (ms).

    The bare subscriber and the gateway run side by side, each on a site of its own (the
    subscriber's filter is `pledge/v1/<site>A/+/events`, the gateway subscribes to `<site>`
    only), and the publisher feeds one of them at a time: whatever else the machine does
    meanwhile, and its speed drifting over a minute, weighs on both alike (as the drawdown
    bench alternates its (a) and (b)). Each slice drains before the next starts. The first
    slice of each warms up for `warmup_s`, later ones for at most 1 s (both processes are up
    and warm by then); only the rest is measured.
    """
    o = b.options
    bare_site = f"{b.site_id}A"
    bare_readers = [_ZoneReader(bare_site, r.device_id, r.index, r.secret) for r in b.readers]
    bare_id = f"bench-{b.run_id}-bare"
    b.client_ids.append(bare_id)
    bare = _BareProcess(b.mqtt_url, bare_id, f"pledge/v1/{bare_site}/+/events", o.receive_maximum)
    await bare.start()
    assert bare.proc is not None
    g = b.gateway()
    g.start()
    await g.ready()
    a_parts: list[_Phase] = []
    b_parts: list[_Phase] = []
    for (warm, measured_a), (_, measured_b) in zip(_slices(o, o.bare_s), _slices(o, o.rate_s), strict=True):
        pool = _pool(bare_readers, int(o.max_rate * (warm + measured_a)) + o.effective_window, o.publishers)
        counted = bare.counter()  # this slice's events only
        a_parts.append(await _drive(b.pubs, pool, counted, counted, bare.cpu_s, warm + measured_a,
                                    warm, o.effective_window,
                                    _census({bare.proc.pid: "subscriber"}, "subscriber")))
        pool_rate = max(p.rate for p in a_parts) * 1.25  # a gateway cannot outrun the ceiling
        b_parts.append(await b.gateway_phase(pool_rate, o.effective_window, warm + measured_b, warm))
    await bare.stop()
    await discard_session(MqttConfig(b.mqtt_url, bare_id))
    a, one = _combined(a_parts), _combined(b_parts)
    b.console.print(_describe_slices("(a) bare paho subscriber", a, a_parts, "(b)"))
    b.console.print(_describe_slices("(b) one gateway, durable", one, b_parts, "(a)"))
    await b.resync()
    latencies = await _latency(b.pubs, b.readers, b.db, o)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    b.console.print(f"(c) latency at {o.latency_rate:,.0f} events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                    f"max {max(latencies, default=float('nan')):.1f} ms ({len(latencies):,} events, "
                    f"poll every {o.poll_ms:g} ms)")
    await b.retire(g)
    return a, one, p99


def _slices(o: IngestBenchOptions, seconds: float) -> list[tuple[float, float]]:
    """(warm-up, measured seconds) of each of `rounds` slices of a phase of `seconds`: the first
    warms up for `warmup_s`, later ones for at most 1 s (the processes are up and warm by then);
    the measured time of the phase is shared out evenly."""
    rounds = max(1, o.rounds)
    measured = max(seconds - o.warmup_s, 0.5) / rounds
    return [(o.warmup_s if r == 0 else min(o.warmup_s, 1.0), measured) for r in range(rounds)]


def _describe_slices(label: str, whole: _Phase, parts: list[_Phase], other: str) -> str:
    slices = " / ".join(f"{p.rate:,.0f}" for p in parts)
    return _describe(f"{label}, alternating with {other} in slices of {slices}", whole)


def _combined(parts: list[_Phase]) -> _Phase:
    """Slices of one phase as one: events over measured time, CPU per event weighted by events."""
    events = [p.rate * p.window_s for p in parts]
    total = sum(events)
    window = sum(p.window_s for p in parts)
    machines = [p.machine for p in parts if p.machine is not None]
    return _Phase(
        total / window if window > 0 else 0.0,
        sum(p.sent for p in parts),
        sum(p.arrived for p in parts),
        window,
        any(p.ran_out for p in parts),
        sum(p.cpu_us * e for p, e in zip(parts, events, strict=True)) / total if total > 0 else 0.0,
        CpuShare.mean(machines) if len(machines) == len(parts) else None,
    )


async def _two_gateways(b: _Run, pool_rate: float) -> _Phase:
    """(d): two gateway processes in one share group."""
    group = f"bench{b.run_id}"
    pair = [b.gateway(group), b.gateway(group)]
    for g in pair:
        g.start()
    for g in pair:
        await g.ready()
    # One window for the pair: Mosquitto deals a share group's messages round robin whatever
    # each member's backlog, and a member's excess over its in-flight window and queue is dropped.
    d = await b.gateway_phase(pool_rate, b.options.effective_window)
    b.console.print(_describe("(d) two gateways, $share group", d))
    await b.retire(*pair)
    return d


async def _grown(b: _Run, store: PostgresStore, pool_rate: float) -> tuple[_Phase, _Phase]:
    """(e): the history loaded (and the dedup probe around the load), then (b) again, side by
    side with the same on an empty store: (with the history, empty)."""
    o = b.options
    last = await b.db.last_seqs()
    probe = [(b.site_id, f"{r.device_id}:{s}") for r in b.readers
             for s in range(1, 1 + min(64, last.get(r.device_id, 0)))]
    await b.db.conn.execute("ANALYZE seen_event")  # as after the load: compare like with like
    before = await _dedup_probe(store, probe)
    t0 = time.perf_counter()
    settled = await _load_history(b.db.conn, b.site_id, f"{b.site_id}-Z", o.history)
    b.console.print(f"loaded {o.history:,} stored events (tag_read + seen_event) in "
                    f"{time.perf_counter() - t0:.1f} s; {settled}")
    per_device = max(1, o.history // _HISTORY_DEVICES)
    probe = [(b.site_id, f"hz-{i % _HISTORY_DEVICES:02d}:{1 + i * 37 % per_device}")
             for i in range(len(probe))]
    after = await _dedup_probe(store, probe)
    b.console.print(f"dedup lookup of {len(probe)} keys: {before[0]:.1f} ms -> {after[0]:.1f} ms; "
                    f"prune pass: {before[1]:.1f} ms -> {after[1]:.1f} ms (before -> after the load)")
    return await _grown_side_by_side(b, pool_rate)


async def _grown_side_by_side(b: _Run, pool_rate: float) -> tuple[_Phase, _Phase]:
    """(e) in slices alternating with the same on an empty store: a twin of the run (a schema
    and a site of its own, the same devices, nothing stored) and its own gateway, both up
    throughout, fed one at a time. growth_ratio compares the two as measured side by side,
    not with (b) a few minutes earlier: this machine's speed drifts more than the effect."""
    o = b.options
    grown: list[_Phase] = []
    empty: list[_Phase] = []
    async with _bench_site(b.database_url, f"{b.schema}_e", f"{b.site_id}E", o.devices) as site:
        twin = dataclasses.replace(b, schema=site.schema, site_id=site.site_id, db=site.db,
                                   readers=site.readers)
        grown_gw, empty_gw = b.gateway(), twin.gateway()
        try:
            for g in (grown_gw, empty_gw):
                g.start()
            for g in (grown_gw, empty_gw):
                await g.ready()
            for warm, measured in _slices(o, o.rate_s):
                grown.append(await b.gateway_phase(pool_rate, o.effective_window, warm + measured, warm))
                empty.append(await twin.gateway_phase(pool_rate, o.effective_window, warm + measured, warm))
        finally:  # before the twin's schema goes
            await b.retire(grown_gw, empty_gw)
    e, e0 = _combined(grown), _combined(empty)
    b.console.print(_describe_slices(f"(e) one gateway, {o.history:,} events stored", e, grown,
                                     "an empty store"))
    b.console.print(_describe_slices("    the same gateway on an empty store", e0, empty,
                                     f"{o.history:,} stored"))
    return e, e0


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "bare":
    _bare_subscriber(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
