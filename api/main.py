"""The FastAPI application: `/v1` routers, problem+json errors, OpenAPI at /docs."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from api import problems
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


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="Pledge: IoT inventory-pledge financing",
        version="0.1.0",
        description="Borrow against pledged goods that sensors prove are there.",
    )
    app.state.platform = platform
    problems.install(app)
    v1 = APIRouter(prefix="/v1")
    for module in (
        health,
        facilities,
        money,
        releases,
        collateral,
        prices,
        reference,
        feed,
        devices,
        deadletters,
    ):
        v1.include_router(module.router)
    for extra in platform.extra.get("routers", []):
        v1.include_router(extra)
    app.include_router(v1)
    app.include_router(metrics.router)  # /metrics, outside /v1 like every Prometheus target
    return app
