"""The FastAPI application: `/v1` routers, problem+json errors, OpenAPI at /docs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.body_limit import BodyLimit
from api.platform import Platform
from api.routes import (
    collateral,
    deadletters,
    devices,
    facilities,
    feed,
    health,
    metrics,
    money,
    prices,
    reference,
    releases,
)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


# Any valid request fits well within it (the largest, 10,000 lots registered at once, is ~5 MB
# of JSON); a larger body is refused with a 413 problem (api/body_limit.py).
MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(
    platform: Platform | None, lifespan: Lifespan | None = None, *, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:
    """The app over `platform`; or, with `platform=None`, over the one `lifespan` builds."""
    app = FastAPI(
        title="Pledge: IoT inventory-pledge financing",
        version="0.1.0",
        description="Borrow against pledged goods that sensors prove are there.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry instrumentation: the platform exports Prometheus metrics
        # (/metrics) and no traces, and the per-request checks of an unconfigured OpenTelemetry
        # cost about 4 % of a money request's CPU (docs/scaling.md).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.platform = platform
    problems.install(app)
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    # Each module's router straight under /v1 (no nested /v1 router): FastAPI matches nested
    # routers level by level, on every request. And in this order: FastAPI tries them one by
    # one, so the money routes (the busiest) come right after the one-route health check
    # (~10 % of a drawdown's web-stack cost, docs/scaling.md); no two routers share a path.
    for module in (
        health,
        money,
        facilities,
        releases,
        collateral,
        prices,
        reference,
        feed,
        devices,
        deadletters,
    ):
        app.include_router(module.router, prefix="/v1")
    for extra in platform.extra.get("routers", []) if platform is not None else []:
        app.include_router(extra, prefix="/v1")
    app.include_router(metrics.router)  # /metrics, outside /v1 like every Prometheus target
    return app


def worker_app() -> FastAPI:
    """The app factory of `pledge api --workers N`: uvicorn starts N processes on one socket,
    and each builds its own platform (store pool, caches) from the environment at startup."""
    from api.cli import build_platform
    from api.settings import Settings
    from ledger.heap import freeze_startup_heap

    settings = Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = await build_platform(settings)
        platform.start_daily_jobs(settings.accrual_job, settings.key_retention())
        app.state.platform = platform
        freeze_startup_heap()
        try:
            yield
        finally:
            await platform.close()

    return create_app(None, lifespan, max_body_bytes=settings.api_max_body_bytes)
