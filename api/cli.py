"""`pledge`: the one entry point, and the composition root that wires settings, stores, gateway
and API together. Every command builds `Settings` here and passes what it needs downward."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from api.platform import Platform
from api.principal import TokenBook
from api.settings import Settings
from gateway.mqtt import RECEIVE_MAXIMUM
from gateway.registry import DeviceRegistry
from ledger.core.errors import LedgerError
from ledger.credit import AccrualRun, CreditService
from ledger.heap import freeze_startup_heap
from ledger.service import LedgerService
from ledger.store.engine import create_engine
from ledger.store.sql import PostgresStore, SqliteStore, SqlLedgerStore
from migrations import migrate

if TYPE_CHECKING:
    from gateway.app import GatewayOptions

app = typer.Typer(help="IoT inventory-pledge financing platform", no_args_is_help=True)
ledger_app = typer.Typer(help="Collateral ledger commands", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (print their figures; not tests)", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(db_app, name="db")
token_app = typer.Typer(help="API bearer tokens", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(token_app, name="token")
credit_app = typer.Typer(help="Credit facility commands", no_args_is_help=True)
app.add_typer(credit_app, name="credit")

console = Console(width=max(120, Console().width))
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


async def open_store(settings: Settings) -> SqlLedgerStore:
    """Create the engine for the configured database and bring its schema to head."""
    path = settings.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url, schema=settings.database_schema)
    await migrate(engine)
    return SqliteStore(engine) if engine.dialect.name == "sqlite" else PostgresStore(engine)


def run(coro_fn: Callable[[], Awaitable[T]], *, uvloop: bool = False) -> T:
    """Run an async command; a LedgerError becomes a clear message and exit status 2.

    `uvloop`: on uvloop's event loop (installed with uvicorn[standard]), as uvicorn itself
    would pick; the API server uses it (`pledge bench drawdown` measured the difference).
    """
    factory = None
    if uvloop:
        with contextlib.suppress(ImportError):
            import uvloop as uv

            factory = uv.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro_fn())  # type: ignore[arg-type]
    except LedgerError as e:
        console.print(f"[red]error ({e.code}):[/] {e}")
        raise typer.Exit(2) from e


async def build_platform(settings: Settings) -> Platform:
    """Wire store, ledger, credit, and tokens from settings (the composition root)."""
    store = await open_store(settings)
    ledger = LedgerService(store, utcnow)
    credit = CreditService(
        ledger,
        utcnow,
        settings.rate_plan(),
        max_batches=settings.money_batches,
        max_orders=settings.money_batch_max,
        min_orders_busy=settings.money_batch_min_busy,
    )
    return Platform(
        store,
        ledger,
        credit,
        TokenBook(store),
        utcnow,
        devices=DeviceRegistry(store, utcnow),
    )


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[
        int,
        typer.Option(min=1, help="API processes, each with its own socket (SO_REUSEPORT), pool, money desk"),
    ] = 1,
) -> None:
    """Serve the HTTP API alone (OpenAPI at /docs)."""
    import uvicorn

    from api.http_protocol import CoalescingHttpToolsProtocol
    from api.main import create_app

    settings = Settings()
    if workers > 1:
        from api.workers import serve

        serve(host or settings.api_host, port or settings.api_port, workers, log_level)
        return

    async def go() -> None:
        platform = await build_platform(settings)
        platform.start_daily_jobs(settings.accrual_job, settings.key_retention())
        web = create_app(platform, max_body_bytes=settings.api_max_body_bytes)
        freeze_startup_heap()
        config = uvicorn.Config(
            web,
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level=log_level,
            access_log=log_level in ("debug", "trace"),
            http=CoalescingHttpToolsProtocol,
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            await platform.close()

    run(go, uvloop=True)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="borrower | collateral_manager | admin")],
    facility: Annotated[str | None, typer.Option(help="facility id (required for borrower)")] = None,
    label: Annotated[str, typer.Option(help="who or what holds the token")] = "",
) -> None:
    """Create a bearer token; prints the secret alone on the last line (shown only once)."""
    settings = Settings()

    async def go() -> str:
        store = await open_store(settings)
        try:
            return await TokenBook(store).create(role, facility, label or role, utcnow())
        finally:
            await store.close()

    secret = run(go)
    console.print(f"created a {role} token" + (f" for facility {facility}" if facility else ""))
    print(secret)


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="seconds of live price ticks after the set-up")] = 5.0,
) -> None:
    """Run the platform on embedded defaults and show what it does."""
    from api.demo import run_demo

    settings = Settings()

    async def go() -> None:
        platform = await build_gateway_platform(settings)
        console.print(f"database: {settings.database_url}")
        try:
            await run_demo(platform, settings.mqtt_url, duration, console)
        finally:
            await platform.close()

    run(go)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of PLEDGE_DATABASE_URL to the latest revision."""
    settings = Settings()

    async def go() -> None:
        store = await open_store(settings)
        await store.close()
        console.print(f"schema at head: {settings.database_url}")

    run(go)


@ledger_app.command("verify")
def ledger_verify(facility: Annotated[str, typer.Option("--facility", help="facility id")]) -> None:
    """Verify a facility's hash-chained journal: prints OK or the first broken entry."""
    settings = Settings()

    async def go() -> bool:
        store = await open_store(settings)
        try:
            broken = await LedgerService(store, utcnow).verify(facility)
        finally:
            await store.close()
        if broken is None:
            console.print(f"OK: journal of facility {facility} verifies")
            return True
        console.print(f"BROKEN: facility {facility} entry seq={broken.seq}: {broken.reason}")
        return False

    if not run(go):
        raise typer.Exit(1)


@credit_app.command("accrue")
def credit_accrue() -> None:
    """Book every facility's interest through yesterday now (what each API process does daily)."""
    settings = Settings()

    async def go() -> AccrualRun:
        platform = await build_platform(settings)
        try:
            return await platform.credit.accrue_all()
        finally:
            await platform.close()

    done = run(go)
    console.print(f"interest accrued: {done.facilities} facilities, {done.postings} interest postings")


@bench_app.command("ledger")
def bench_ledger(
    movements: int = 100_000,
    lots_small: int = 10_000,
    lots_large: int = 1_000_000,
    facilities: int = 1_000,
    batch: int = 1_000,
    database_url: Annotated[
        str, typer.Option(envvar="PLEDGE_BENCH_DATABASE_URL")
    ] = "postgresql+asyncpg://root@127.0.0.1:5432/test",
) -> None:
    """Ledger throughput, revaluation time, growth ratio and peak memory (PostgreSQL)."""
    from ledger.bench import run_ledger_bench

    asyncio.run(run_ledger_bench(database_url, movements, lots_small, lots_large, facilities, batch, console))


@bench_app.command("drawdown")
def bench_drawdown(
    seconds: Annotated[float, typer.Option(help="seconds of (a), of (b) and of (d), each")] = 10.0,
    postings: int = 1_000_000,
    workers: Annotated[int, typer.Option(min=1, help="API worker processes (pledge api --workers)")] = 1,
    rounds: Annotated[int, typer.Option(min=1, help="(a) and (b) alternate in this many slices each")] = 3,
    database_url: Annotated[
        str, typer.Option(envvar="PLEDGE_BENCH_DATABASE_URL")
    ] = "postgresql+asyncpg://root@127.0.0.1:5432/test",
) -> None:
    """HTTP drawdown/repayment rate vs a trivial endpoint, race overdraw, growth, peak memory."""
    from api.bench import run_drawdown_bench

    asyncio.run(run_drawdown_bench(database_url, seconds, postings, console, workers, rounds))


@bench_app.command("ingest")
def bench_ingest(
    bare_seconds: Annotated[float, typer.Option(help="(a) bare subscriber phase")] = 10.0,
    rate_seconds: Annotated[float, typer.Option(help="(b), (d), (e): each throughput phase")] = 15.0,
    latency_seconds: Annotated[float, typer.Option(help="(c) paced latency phase")] = 15.0,
    latency_rate: Annotated[float, typer.Option(help="(c) events/s")] = 1000.0,
    history: Annotated[int, typer.Option(help="(e) events stored before measuring again")] = 1_000_000,
    devices: Annotated[int, typer.Option(help="zone readers publishing")] = 8,
    publishers: Annotated[int, typer.Option(help="publisher MQTT connections")] = 4,
    window: Annotated[
        int | None,
        typer.Option(help="events published, not yet committed (default: Receive Maximum - 1000)"),
    ] = None,
    receive_maximum: Annotated[
        int, typer.Option(help="MQTT 5 Receive Maximum of the gateways and the bare subscriber")
    ] = RECEIVE_MAXIMUM,
    warmup_seconds: Annotated[float, typer.Option(help="unmeasured start of each phase")] = 2.0,
    rounds: Annotated[int, typer.Option(min=1, help="(a) and (b) alternate in this many slices each")] = 3,
    database_url: Annotated[
        str, typer.Option(envvar="PLEDGE_BENCH_DATABASE_URL")
    ] = "postgresql+asyncpg://root@127.0.0.1:5432/test",
    mqtt_url: Annotated[str, typer.Option(envvar="PLEDGE_BENCH_MQTT_URL")] = "mqtt://127.0.0.1:1883",
) -> None:
    """MQTT ingest: bare-subscriber ceiling, durable rate, latency, shared subscription, growth, memory."""
    from gateway.bench import IngestBenchOptions, run_ingest_bench

    options = IngestBenchOptions(
        bare_s=bare_seconds,
        rate_s=rate_seconds,
        latency_s=latency_seconds,
        latency_rate=latency_rate,
        history=history,
        devices=devices,
        publishers=publishers,
        window=window,
        receive_maximum=receive_maximum,
        warmup_s=warmup_seconds,
        rounds=rounds,
    )
    asyncio.run(run_ingest_bench(database_url, mqtt_url, options, console))


# --- gateway: `pledge gateway`, `pledge serve`, `pledge devices ...`, `pledge deadletters` -------

devices_app = typer.Typer(help="Device registry (MQTT gateway)", no_args_is_help=True)
app.add_typer(devices_app, name="devices")


def _gateway_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def gateway_options(settings: Settings) -> GatewayOptions:
    """The gateway's options from settings (protocol 311 is forced for the embedded broker)."""
    from gateway.app import GatewayOptions
    from gateway.ingest import IngestConfig

    return GatewayOptions(
        mqtt_url=settings.mqtt_url,
        client_id=settings.mqtt_client_id,
        protocol=5 if settings.mqtt_protocol == 5 else 311,
        receive_maximum=settings.mqtt_receive_maximum,
        share_group=settings.mqtt_share_group,
        sites=tuple(x.strip() for x in (settings.mqtt_sites or "").split(",") if x.strip()),
        batch_max=settings.batch_max,
        batch_max_wait_s=settings.batch_max_wait_s,
        tick_s=settings.gateway_tick_s,
        pipeline=settings.gateway_pipeline,
        ingest=IngestConfig(
            debounce_s=settings.debounce_s,
            max_skew_s=settings.max_clock_skew_s,
            heartbeat_grace=settings.heartbeat_grace,
            dedup_retention_s=settings.dedup_retention_s,
            device_refresh_s=settings.device_refresh_s,
        ),
    )


async def build_gateway_platform(settings: Settings) -> Platform:
    """`build_platform` plus the gateway's parts: device registry, metrics registry, routers."""
    from prometheus_client import CollectorRegistry

    platform = await build_platform(settings)
    platform.extra["metrics_registry"] = CollectorRegistry()
    return platform


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set `stop`. signal.signal rather than loop.add_signal_handler: uvicorn
    (pledge serve) replaces handlers while it serves, then restores these and re-raises the
    signal it caught, which lands here instead of killing the process mid-shutdown."""
    import signal

    loop = asyncio.get_running_loop()

    def handler(signum: int, _frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


@app.command("gateway")
def gateway_command() -> None:
    """Run the MQTT gateway alone (PLEDGE_MQTT_URL unset: an embedded broker); SIGTERM stops it."""
    from prometheus_client import CollectorRegistry, start_http_server

    from gateway.app import run_gateway
    from gateway.metrics import GatewayMetrics

    settings = Settings()
    _gateway_logging()

    async def go() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        platform = await build_platform(settings)
        registry = CollectorRegistry()
        metrics = GatewayMetrics(registry)
        freeze_startup_heap()
        server = None
        if settings.metrics_port:
            server, _thread = start_http_server(settings.metrics_port, settings.api_host, registry)
            console.print(f"metrics at http://{settings.api_host}:{settings.metrics_port}/metrics")
        try:
            await run_gateway(gateway_options(settings), platform.ledger, utcnow, metrics, stop)
        finally:
            if server is not None:
                server.shutdown()
            await platform.close()

    run(go)


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
) -> None:
    """Run the gateway and the HTTP API in one process (one event loop); /metrics on the API."""
    import uvicorn

    from api.http_protocol import CoalescingHttpToolsProtocol
    from api.main import create_app
    from api.routes import metrics as metrics_route
    from gateway.app import run_gateway
    from gateway.metrics import GatewayMetrics

    settings = Settings()
    _gateway_logging()

    async def go() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        platform = await build_gateway_platform(settings)
        platform.start_daily_jobs(settings.accrual_job, settings.key_retention())
        metrics = GatewayMetrics(platform.extra["metrics_registry"])
        web = create_app(platform, max_body_bytes=settings.api_max_body_bytes)
        web.include_router(metrics_route.router)
        freeze_startup_heap()
        server = uvicorn.Server(
            uvicorn.Config(
                web,
                host=host or settings.api_host,
                port=port or settings.api_port,
                log_level="info",
                http=CoalescingHttpToolsProtocol,
            )
        )
        gateway = asyncio.create_task(
            run_gateway(gateway_options(settings), platform.ledger, utcnow, metrics, stop)
        )
        gateway.add_done_callback(lambda _t: setattr(server, "should_exit", True))
        try:
            await server.serve()
        finally:
            stop.set()
            try:
                await gateway
            finally:
                await platform.close()

    run(go)


def _registry_errors(fn: Callable[[], Awaitable[T]]) -> T:
    from gateway.registry import RegistryError

    try:
        return run(fn)
    except RegistryError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e


@devices_app.command("register")
def devices_register(
    device_id: Annotated[str, typer.Option("--id", help="device id (also its MQTT user name)")],
    kind: Annotated[str, typer.Option(help="rfid_gate | rfid_zone | scale | camera")],
    site: Annotated[str, typer.Option(help="site id")],
    zone: Annotated[str, typer.Option(help="zone id (a gate's: where received goods are booked)")],
    format: Annotated[
        str, typer.Option(help="native | impinj | zebra | epcis | scale_json | mtsics | camera")
    ],
    secret: Annotated[str | None, typer.Option(help="native: HMAC key as hex (default: generated)")] = None,
    antenna: Annotated[
        list[str] | None, typer.Option(help="gate antenna side, repeatable: --antenna 1=outside")
    ] = None,
    heartbeat_interval: Annotated[int, typer.Option(help="seconds between heartbeats")] = 60,
) -> None:
    """Register a device; a native device's secret is printed alone on the last line, once."""
    from gateway.registry import DeviceRegistry, DeviceSpec

    settings = Settings()
    sides: dict[int, str] = {}
    for item in antenna or []:
        port_text, _, side = item.partition("=")
        if not port_text.strip().isdigit():
            raise typer.BadParameter(f"{item!r}: expected PORT=outside|inside", param_hint="--antenna")
        sides[int(port_text)] = side.strip()
    spec = DeviceSpec(device_id, site, zone, kind, format, secret, sides, heartbeat_interval)

    async def go() -> str | None:
        store = await open_store(settings)
        try:
            _device, key = await DeviceRegistry(store, utcnow).register(spec)
            return key
        finally:
            await store.close()

    key = _registry_errors(go)
    console.print(f"registered {kind} {device_id} at {site}/{zone} ({format})")
    if key is not None:
        print(key)


@devices_app.command("list")
def devices_list(site: Annotated[str | None, typer.Option(help="only this site")] = None) -> None:
    """Registered devices with their status (online, last seen, last native seq)."""
    from rich.table import Column, Table

    from gateway.registry import DeviceRegistry

    settings = Settings()

    async def go() -> list[Any]:
        store = await open_store(settings)
        try:
            return await DeviceRegistry(store, utcnow).statuses(site)
        finally:
            await store.close()

    table = Table(
        "device",
        "kind",
        "site",
        "zone",
        "format",
        Column("antennas", no_wrap=True),
        "active",
        "online",
        Column("last seen", no_wrap=True),
        "last seq",
    )
    for s in _registry_errors(go):
        d = s.device
        table.add_row(
            d.device_id,
            d.kind,
            d.site_id,
            d.zone_id or "",
            d.format,
            ",".join(f"{k}={v}" for k, v in sorted(d.antenna_sides.items())),
            "yes" if d.active else "no",
            "yes" if s.online else "no",
            s.last_seen_at.isoformat(timespec="seconds") if s.last_seen_at else "-",
            "-" if s.last_seq is None else str(s.last_seq),
        )
    console.print(table)


@app.command("deadletters")
def deadletters_command(
    reason: Annotated[str | None, typer.Option(help="only this reason code")] = None,
    since: Annotated[str | None, typer.Option(help="only from this time (ISO 8601 with offset)")] = None,
    after: Annotated[int | None, typer.Option(help="page: ids above this one")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
) -> None:
    """Messages the gateway refused (oldest first), then the counts by reason."""
    from rich.table import Table

    from gateway.dead_letter import DeadLetterBook

    settings = Settings()
    when = None
    if since is not None:
        when = datetime.fromisoformat(since)
        if when.tzinfo is None:
            raise typer.BadParameter("needs an offset, e.g. 2026-01-05T09:00:00+00:00", param_hint="--since")

    async def go() -> tuple[list[Any], dict[str, int]]:
        store = await open_store(settings)
        try:
            book = DeadLetterBook(store)
            return await book.list(reason, when, after, limit), await book.counts(when)
        finally:
            await store.close()

    letters, counts = run(go)
    table = Table("id", "at", "reason", "device", "topic", "bytes", "detail")
    for d in letters:
        table.add_row(
            str(d.dead_letter_id),
            d.at.isoformat(timespec="seconds"),
            d.reason,
            d.device_id or "-",
            d.topic,
            str(d.size),
            d.detail[:80],
        )
    console.print(table)
    console.print("by reason: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # `python -m api.cli`
    app()
