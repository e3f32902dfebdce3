"""Prometheus metrics at `/metrics` (outside /v1, no auth: counters only, no business data).

The registry is the gateway's (`platform.extra["metrics_registry"]`), present when the gateway
runs in the same process (`pledge serve`); otherwise the page is empty.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import PlatformDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(platform: PlatformDep) -> Response:
    """Prometheus text exposition of the in-process gateway's metrics."""
    registry = platform.extra.get("metrics_registry")
    body = generate_latest(registry) if isinstance(registry, CollectorRegistry) else b""
    return Response(body, media_type=CONTENT_TYPE_LATEST)
