"""Live feed of a facility (Server-Sent Events): BB, availability, status and credit events.

The feed polls the database (every `feed_poll_s`), so it sees changes made by any process:
the gateway in another process, another API worker. Each change is one SSE message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import PlatformDep, VisibleFacility
from api.views import summary_view

router = APIRouter(prefix="/facilities/{facility_id}", tags=["feed"])

_WATCHED = ("borrowing_base", "availability", "outstanding", "line_state", "frozen", "status", "market_value")


@router.get("/feed")
async def feed(
    facility_id: VisibleFacility,
    request: Request,
    platform: PlatformDep,
    max_events: int = Query(0, ge=0, le=100_000, description="stop after this many messages (0: never)"),
) -> StreamingResponse:
    """Server-Sent Events: `facility` messages when watched figures change, `event` per credit event."""
    await platform.ledger.facility(facility_id)

    async def stream() -> AsyncIterator[bytes]:
        last: dict[str, object] | None = None
        after = 0
        sent = 0
        while not await request.is_disconnected():
            view = summary_view(await platform.credit.summary(facility_id))
            watched = {k: view[k] for k in _WATCHED}
            if watched != last:
                last = watched
                yield f"event: facility\ndata: {json.dumps(view)}\n\n".encode()
                sent += 1
            for ev in await platform.credit.events(facility_id, after, 100):
                after = ev["event_id"]
                data = json.dumps({**ev, "at": ev["at"].isoformat()})
                yield f"event: credit\nid: {after}\ndata: {data}\n\n".encode()
                sent += 1
            if max_events and sent >= max_events:
                return
            await asyncio.sleep(platform.feed_poll_s)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
