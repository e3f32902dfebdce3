"""Live feed of a facility (Server-Sent Events): BB, availability, status and credit events.

The feed polls the database (every `feed_poll_s`), so it sees changes made by any process:
the gateway in another process, another API worker. Each change is one SSE message.

Credit messages carry their event id as the SSE `id`: a client that reconnects (a browser's
EventSource does, with `Last-Event-ID`) or passes `after` gets only the events after it. A
comment line (`: keep-alive`) goes out after `HEARTBEAT_S` of silence, so that proxies and load
balancers do not close a quiet feed as idle.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import PlatformDep, VisibleFacility
from api.views import summary_view
from ledger.core.errors import InvalidReference

router = APIRouter(prefix="/facilities/{facility_id}", tags=["feed"])

_WATCHED = ("borrowing_base", "availability", "outstanding", "line_state", "frozen", "status", "market_value")
HEARTBEAT_S = 15.0  # well below the usual 60 s idle timeout of proxies
_MAX_ID = 2**63 - 1


@router.get("/feed")
async def feed(
    facility_id: VisibleFacility,
    request: Request,
    platform: PlatformDep,
    max_events: int = Query(0, ge=0, le=100_000, description="stop after this many messages (0: never)"),
    after: int = Query(0, ge=0, le=_MAX_ID, description="send only credit events after this id"),
    last_event_id: str | None = Header(
        None, alias="Last-Event-ID", description="sent by a reconnecting EventSource; wins over `after`"
    ),
) -> StreamingResponse:
    """Server-Sent Events: a `facility` message first and whenever watched figures change, a
    `credit` message per credit event (its id as the SSE id), a `: keep-alive` comment after
    15 s of silence."""
    await platform.ledger.facility(facility_id)
    if last_event_id is not None:
        if not (last_event_id.isascii() and last_event_id.isdigit() and int(last_event_id) <= _MAX_ID):
            raise InvalidReference("Last-Event-ID must be the id of a credit message of this feed")
        after = int(last_event_id)

    async def stream() -> AsyncIterator[bytes]:
        last: dict[str, object] | None = None
        seen, sent = after, 0
        quiet_since = asyncio.get_running_loop().time()
        while not await request.is_disconnected():
            out: list[bytes] = []
            view = summary_view(await platform.credit.summary(facility_id))
            watched = {k: view[k] for k in _WATCHED}
            if watched != last:
                last = watched
                out.append(f"event: facility\ndata: {json.dumps(view)}\n\n".encode())
            for ev in await platform.credit.events(facility_id, seen, 100):
                seen = ev["event_id"]
                data = json.dumps({**ev, "at": ev["at"].isoformat()})
                out.append(f"event: credit\nid: {seen}\ndata: {data}\n\n".encode())
            now = asyncio.get_running_loop().time()
            if out:
                quiet_since = now
            elif now - quiet_since >= HEARTBEAT_S:
                quiet_since = now
                yield b": keep-alive\n\n"
            for message in out:
                yield message
                sent += 1
                if max_events and sent >= max_events:
                    return
            await asyncio.sleep(platform.feed_poll_s)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
