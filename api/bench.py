"""`pledge bench drawdown`: HTTP throughput of money requests against a trivial endpoint.

All against PostgreSQL, in a schema of its own, with the API in its own process (`pledge api`):
(a) rate of GET /v1/health from 64 concurrent keep-alive clients (the server stack's ceiling);
(b) rate and p99 of alternating drawdowns and repayments (each with its Idempotency-Key) from
    64 clients spread over 100 facilities; (c) 1,000 concurrent drawdowns on ONE facility:
    how far their accepted total exceeds the availability (must be 0); (d) (b) again after
    1,000,000 postings were loaded into the journal, in slices alternating with the same on an
    empty journal (a twin: a schema and an API server of its own), growth_ratio = (d) / twin;
    (e) the API processes' peak RSS (VmHWM).
The load generator is a minimal HTTP/1.1 client on raw asyncio streams, so that the client's
own cost stays small next to the server's on this 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rich.console import Console
from sqlalchemy import text

from api.principal import TokenBook
from ledger.core.price import PricePoint
from ledger.core.pricing import RatePlan
from ledger.core.reference import Borrower, Facility, Site, Sku, SkuTerms, Zone
from ledger.credit import CreditService
from ledger.heap import freeze_startup_heap
from ledger.machine_load import CpuShare, MachineLoad, by_name
from ledger.service import LedgerService, LotRegistration
from ledger.store.checkpoint import checkpoint
from ledger.store.engine import create_engine
from ledger.store.sql import PostgresStore
from migrations import migrate

D = Decimal
PLAN = RatePlan(D("0.03"), D("0.01"), {"B": D("0.02")}, D("0.013"))


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU seconds of the API's processes while measuring
    seconds: float = 0.0  # measured time
    machine: list[CpuShare] = field(default_factory=list)  # where the CPU went, per slice

    def add(self, other: Load) -> None:
        self.cpu_s += other.cpu_s
        self.seconds += other.seconds
        self.machine += other.machine
        self.latencies += other.latencies
        for k, v in other.statuses.items():
            self.statuses[k] = self.statuses.get(k, 0) + v

    def cpu_per_request_us(self) -> float:
        return 1e6 * self.cpu_s / max(1, len(self.latencies))

    def machine_line(self) -> str:
        return f"\n    machine: {CpuShare.mean(self.machine).line()}" if self.machine else ""

    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def p(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


class Conn:
    """One keep-alive HTTP/1.1 connection: request, then read exactly one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", "Host: bench"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.w.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.r.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        return status, await self.r.readexactly(length)

    def close(self) -> None:
        self.w.close()


async def _world(url: str, schema: str, facilities: int) -> tuple[list[str], list[str]]:
    engine = create_engine(url, schema=schema)
    await migrate(engine)
    store = PostgresStore(engine)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    ledger = LedgerService(store, clock)
    credit = CreditService(ledger, clock, PLAN)
    await ledger.add(Site("S1", "bench site"))
    await ledger.add(Zone("Z1", "S1", "zone"))
    await ledger.add(Sku("CU", "copper", "t", D(1000), D("0.01"), "EUR"))
    await ledger.add(Borrower("BB", "bench borrower", "B"))
    now = clock()
    for day in range(30, -1, -1):
        await ledger.record_price(
            PricePoint("CU", now - timedelta(days=day), D(8000 + day % 5), "EUR", "bench")
        )
    ids = [f"DF{i:04d}" for i in range(facilities)]
    for fid in ids:
        await credit.open_facility(
            Facility(
                facility_id=fid,
                borrower_id="BB",
                currency="EUR",
                commitment=D(50_000_000),
                terms={"CU": SkuTerms("CU", D("0.6"))},
                approved_sites=frozenset({"S1"}),
                reserves=D(0),
            ),
            "B",
        )
    regs = [
        LotRegistration(
            f"{fid}-L{n}",
            fid,
            f"E{fid}{n:04d}",
            "CU",
            D(1000),
            "S1",
            "Z1",
            pledge=True,
            received=True,
            verified=True,
        )
        for fid in ids
        for n in range(10)
    ]
    await ledger.register_lots(regs)
    tokens = TokenBook(store)
    secrets = [await tokens.create("borrower", fid, "bench", now) for fid in ids]
    await store.close()
    return ids, secrets


async def _load_postings(url: str, schema: str, ids: list[str], count: int) -> str:
    """Bulk-load `count` balanced historic postings (drawdown/repayment pairs that net to zero)."""
    import asyncpg

    dsn = url.replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        seq = {
            fid: await conn.fetchval("SELECT posting_seq FROM credit_state WHERE facility_id=$1", fid)
            for fid in ids
        }
        base = datetime(2025, 1, 1, tzinfo=UTC)
        postings, lines = [], []
        for n in range(count):
            fid = ids[n % len(ids)]
            seq[fid] += 1
            pid = f"H-{n:08d}"
            kind = "drawdown" if n // len(ids) % 2 == 0 else "repayment"
            at = base + timedelta(seconds=n)
            postings.append((fid, pid, seq[fid], at, kind, "EUR", D("100.00"), "history", None))
            dr, cr = ("principal", "cash") if kind == "drawdown" else ("cash", "principal")
            lines.append((fid, pid, 0, dr, D("100.00"), D(0)))
            lines.append((fid, pid, 1, cr, D(0), D("100.00")))
            if len(postings) >= 50_000:
                await conn.copy_records_to_table("posting", records=postings)
                await conn.copy_records_to_table("posting_line", records=lines)
                postings, lines = [], []
        if postings:
            await conn.copy_records_to_table("posting", records=postings)
            await conn.copy_records_to_table("posting_line", records=lines)
        for fid, s in seq.items():
            await conn.execute("UPDATE credit_state SET posting_seq=$2 WHERE facility_id=$1", fid, s)
        await conn.execute("ANALYZE posting; ANALYZE posting_line")
        return await checkpoint(conn)
    finally:
        await conn.close()


async def _run(
    port: int, clients: int, seconds: float, make, warmup: float = 1.0, cpu: _Cpu | None = None
) -> Load:
    """`clients` closed-loop keep-alive clients for `warmup` + `seconds`; only requests that
    start after the warm-up count (the first ones fill the server's caches: tokens, facilities,
    prepared statements, new pooled connections), and only the API CPU spent after it."""
    freeze_startup_heap()  # the load generator's own collections (ledger/heap.py)
    load = Load()
    start = time.perf_counter()
    census = _census(cpu.pid) if cpu is not None else None
    if cpu is not None and census is not None:  # both or neither
        asyncio.get_running_loop().call_later(warmup, cpu.mark)
        asyncio.get_running_loop().call_later(warmup, census.start)
    measure_from = start + warmup
    deadline = measure_from + seconds
    conns = [await Conn.open(port) for _ in range(clients)]

    async def worker(i: int, c: Conn) -> None:
        n = 0
        while time.perf_counter() < deadline:
            method, path, headers, body = make(i, n)
            t0 = time.perf_counter()
            status, _ = await c.request(method, path, headers, body)
            if t0 >= measure_from:
                load.latencies.append(time.perf_counter() - t0)
                load.statuses[status] = load.statuses.get(status, 0) + 1
            n += 1

    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    load.seconds = time.perf_counter() - measure_from
    if cpu is not None and census is not None:
        load.cpu_s = cpu.since_mark()
        load.machine.append(census.stop())
    for c in conns:
        c.close()
    return load


async def _settle(url: str) -> str:
    """A checkpoint before (a) and (b): what an earlier bench left to write is not measured."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return await checkpoint(conn)
    finally:
        await conn.close()


def _money(ids: list[str], secrets: list[str], run_id: str):
    def make(i: int, n: int, part: str = "") -> tuple[str, str, dict[str, str], bytes]:
        f = (i * 7919 + n // 2) % len(ids)  # each client draws, then repays the same facility
        kind = "drawdowns" if n % 2 == 0 else "repayments"
        key = f"{run_id}{part}-{i}-{n}"
        headers = {"Authorization": f"Bearer {secrets[f]}", "Idempotency-Key": key}
        return "POST", f"/v1/facilities/{ids[f]}/{kind}", headers, b'{"amount": "100.00"}'

    return make


async def _race(port: int, fid: str, secret: str, n: int) -> tuple[Decimal, Decimal]:
    """`n` concurrent drawdowns on one facility; returns (accepted total, availability before)."""
    c = await Conn.open(port)
    _status, body = await c.request("GET", f"/v1/facilities/{fid}", {"Authorization": f"Bearer {secret}"})
    c.close()
    avail = D(json.loads(body)["availability"])
    amount = (avail / (n // 2)).quantize(D("0.01"))  # about half of them can succeed
    conns = [await Conn.open(port) for _ in range(min(n, 250))]
    accepted = D(0)

    async def one(k: int) -> None:
        nonlocal accepted
        conn = conns[k % len(conns)]
        async with locks[k % len(conns)]:
            s, _ = await conn.request(
                "POST",
                f"/v1/facilities/{fid}/drawdowns",
                {"Authorization": f"Bearer {secret}", "Idempotency-Key": f"race-{k}"},
                json.dumps({"amount": str(amount)}).encode(),
            )
        if s == 201:
            accepted += amount

    locks = [asyncio.Lock() for _ in conns]
    await asyncio.gather(*(one(k) for k in range(n)))
    for conn in conns:
        conn.close()
    return accepted, avail


_WARM_UP_S = 3.0

_API = [sys.executable, "-m", "api.cli", "api", "--log-level", "warning"]


def _tree(pid: int) -> list[int]:
    """The API server and its worker processes (`--workers N`)."""
    import psutil

    return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]


class _Cpu:
    """CPU seconds (user + system) of the API's processes from `mark` to `since_mark`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.last = self._total()

    def _total(self) -> float:
        import psutil

        total = 0.0
        for p in _tree(self.pid):
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(p).cpu_times()
                total += t.user + t.system
        return total

    def mark(self) -> None:
        self.last = self._total()

    def since_mark(self) -> float:
        return self._total() - self.last


def _census(server_pid: int) -> MachineLoad:
    """Where a phase's CPU goes: the API's processes, this process (the 64 clients), PostgreSQL."""
    pids = {p: "api" for p in _tree(server_pid)} | {os.getpid(): "clients"}
    return MachineLoad(by_name(pids, {"postgres": "postgres"}), ["api", "clients", "postgres"])


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _side_by_side(port: int, seconds: float, rounds: int, money_load, cpu: _Cpu) -> tuple[Load, Load]:
    """(a) and (b) in alternating slices, `rounds` of each, so that whatever else the machine
    does in the meantime weighs on both alike: (health, money)."""
    health, money, slice_s = Load(), Load(), seconds / rounds
    for r in range(rounds):
        health.add(await _run(port, 64, slice_s, lambda i, n: ("GET", "/v1/health", {}, b""), cpu=cpu))
        money.add(await _run(port, 64, slice_s, lambda i, n, r=r: money_load(i, n, f"{r}"), cpu=cpu))
    return health, money


async def run_drawdown_bench(
    url: str, seconds: float, postings: int, console: Console, workers: int = 1, rounds: int = 3
) -> None:
    served: list[_Served] = []  # stopped, their schemas dropped, whatever happens
    try:
        run = await _Served.start(url, f"bench_{uuid.uuid4().hex[:10]}", 101, workers)
        served.append(run)
        console.print(await _settle(url))
        ids, secrets, port, server, cpu = run.ids, run.secrets, run.port, run.server, run.cpu
        race_id, race_secret = ids.pop(), secrets.pop()
        console.print(
            f"API server pid {server.pid} on port {port} ({workers} worker process(es)); 100 facilities; "
            f"{seconds:.0f}s per phase after a 1s warm-up; (a) and (b) alternate in {rounds} slices each, "
            f"after {_WARM_UP_S:.0f}s of unmeasured money requests (cold start)"
        )
        # A fresh server's first money requests open the pool's connections and prepare the
        # batch statements on each, and fill the token and facility caches: seconds of cold
        # start on this 2-core machine, not the steady state (b) measures. Unmeasured.
        await _run(port, 64, _WARM_UP_S, _money(ids, secrets, "w"))
        health, money = await _side_by_side(port, seconds, rounds, _money(ids, secrets, "b"), cpu)
        rate_a, rate_b = health.rate(), money.rate()
        console.print(
            f"(a) GET /v1/health: {rate_a:,.0f} req/s, p99 {health.p(0.99):.1f} ms {health.statuses}; "
            f"{health.cpu_per_request_us():.0f} us of API CPU per request{health.machine_line()}"
        )
        console.print(
            f"(b) drawdowns+repayments: {rate_b:,.0f} req/s, p50 {money.p(0.5):.1f} ms, "
            f"p99 {money.p(0.99):.1f} ms {money.statuses}; {money.cpu_per_request_us():.0f} us of API CPU "
            f"per request{money.machine_line()}"
        )
        accepted, avail = await _race(port, race_id, race_secret, 1000)
        overdraw = max(D(0), accepted - avail)
        console.print(
            f"(c) 1000 concurrent drawdowns on {race_id}: accepted {accepted} of availability {avail}; "
            f"overdraw {overdraw}"
        )
        t0 = time.perf_counter()
        settled = await _load_postings(url, run.schema, ids, postings)
        console.print(f"loaded {postings:,} historic postings in {time.perf_counter() - t0:.1f}s; {settled}")
        # (d) against the same on an empty journal, side by side: a twin (a schema of its own,
        # the same 100 facilities, no history) behind an API server of its own, the two fed in
        # alternating slices, as (a) and (b) are: this machine's speed drifts more between
        # (b) and (d), minutes apart, than the history changes anything.
        twin = await _Served.start(url, f"{run.schema}_e", len(ids))
        served.append(twin)
        await _run(twin.port, 64, _WARM_UP_S, _money(twin.ids, twin.secrets, "w"))
        money_d, money_e = Load(), Load()
        for r in range(rounds):
            money_d.add(await _run(port, 64, seconds / rounds, _money(ids, secrets, f"d{r}"), cpu=cpu))
            empty = _money(twin.ids, twin.secrets, f"e{r}")
            money_e.add(await _run(twin.port, 64, seconds / rounds, empty, cpu=twin.cpu))
        rate_d, rate_e = money_d.rate(), money_e.rate()
        console.print(
            f"(d) drawdowns+repayments with {postings:,} postings, alternating with an empty journal: "
            f"{rate_d:,.0f} req/s, p99 {money_d.p(0.99):.1f} ms {money_d.statuses}; "
            f"{money_d.cpu_per_request_us():.0f} us of API CPU per request{money_d.machine_line()}"
        )
        console.print(
            f"    the same on an empty journal (its own API server): {rate_e:,.0f} req/s, "
            f"p99 {money_e.p(0.99):.1f} ms {money_e.statuses}; {money_e.cpu_per_request_us():.0f} us of "
            f"API CPU per request{money_e.machine_line()}"
        )
        rss = max(_peak_rss_mb(p) for s in (server, twin.server) for p in _tree(s.pid))
        console.print(
            f"drawdown_ratio={rate_b / rate_a:.2f} rps={rate_b:.0f} p99_ms={money.p(0.99):.1f} "
            f"overdraw={overdraw} growth_ratio={rate_d / rate_e:.2f} peak_rss_mb={rss:.0f}"
        )
    finally:
        for s in reversed(served):
            await s.stop()


@dataclass
class _Served:
    """Facilities in a schema of their own (`_world`), behind an API server of their own: the
    run's, and its twin with nothing in the journal that (d) is measured against."""

    url: str
    schema: str
    ids: list[str]
    secrets: list[str]
    port: int
    server: subprocess.Popen[bytes]
    cpu: _Cpu

    @classmethod
    async def start(cls, url: str, schema: str, facilities: int, workers: int = 1) -> _Served:
        await _execute(url, f'CREATE SCHEMA "{schema}"')
        try:
            ids, secrets = await _world(url, schema, facilities)
            port = _free_port()
            env = {**os.environ, "PLEDGE_DATABASE_URL": url, "PLEDGE_DATABASE_SCHEMA": schema}
            server = subprocess.Popen([*_API, "--port", str(port), f"--workers={workers}"], env=env)
        except BaseException:
            await _execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            raise
        served = cls(url, schema, ids, secrets, port, server, _Cpu(server.pid))
        try:
            await _wait_port(port)
        except BaseException:
            await served.stop()
            raise
        return served

    async def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=30)
        await _execute(self.url, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


async def _execute(url: str, sql: str) -> None:
    """One statement in a transaction of its own (the schemas' DDL)."""
    admin = create_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await admin.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = await Conn.open(port)
            c.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"API server did not listen on port {port} within {timeout}s")
