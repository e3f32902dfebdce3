"""`pledge`: the one entry point, and the composition root that wires settings, stores, gateway
and API together. Every command builds `Settings` here and passes what it needs downward."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from api.idempotency import IdempotencyBook
from api.platform import Platform
from api.principal import TokenBook
from api.settings import Settings
from ledger.core.errors import LedgerError
from ledger.credit import CreditService
from ledger.service import LedgerService
from ledger.store.engine import create_engine
from ledger.store.sql import PostgresStore, SqliteStore, SqlLedgerStore
from migrations import migrate

app = typer.Typer(help="IoT inventory-pledge financing platform", no_args_is_help=True)
ledger_app = typer.Typer(help="Collateral ledger commands", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (print their figures; not tests)", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(db_app, name="db")
token_app = typer.Typer(help="API bearer tokens", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(token_app, name="token")

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


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command; a LedgerError becomes a clear message and exit status 2."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except LedgerError as e:
        console.print(f"[red]error ({e.code}):[/] {e}")
        raise typer.Exit(2) from e


async def build_platform(settings: Settings) -> Platform:
    """Wire store, ledger, credit, tokens and idempotency from settings (the composition root)."""
    store = await open_store(settings)
    ledger = LedgerService(store, utcnow)
    credit = CreditService(ledger, utcnow, settings.rate_plan())
    return Platform(store, ledger, credit, TokenBook(store), IdempotencyBook(store), utcnow)


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the HTTP API alone (OpenAPI at /docs)."""
    import uvicorn

    from api.main import create_app

    settings = Settings()

    async def go() -> None:
        platform = await build_platform(settings)
        config = uvicorn.Config(
            create_app(platform),
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level="info",
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            await platform.store.close()

    run(go)


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
        store = await open_store(settings)
        console.print(f"database: {settings.database_url}")
        try:
            await run_demo(LedgerService(store, utcnow), duration, console)
        finally:
            await store.close()

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
    seconds: float = 10.0,
    postings: int = 1_000_000,
    database_url: Annotated[
        str, typer.Option(envvar="PLEDGE_BENCH_DATABASE_URL")
    ] = "postgresql+asyncpg://root@127.0.0.1:5432/test",
) -> None:
    """HTTP drawdown/repayment rate vs a trivial endpoint, race overdraw, growth, peak memory."""
    from api.bench import run_drawdown_bench

    asyncio.run(run_drawdown_bench(database_url, seconds, postings, console))


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # `python -m api.cli`
    app()
