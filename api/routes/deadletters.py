"""Dead letters: the messages the gateway refused, with reason, topic and raw bytes (staff only).

Keyset-paginated by id (oldest first; pass `after` = `next_after`). Raw bytes are base64.
`counts` gives the number of dead letters per reason (since `since`, if given).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query

from api.deps import PlatformDep, Staff
from api.problems import ApiProblem
from gateway.dead_letter import DeadLetter, DeadLetterBook

router = APIRouter(prefix="/deadletters", tags=["gateway"])


def dead_letter_view(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": d.dead_letter_id,
        "at": d.at.isoformat(),
        "reason": d.reason,
        "topic": d.topic,
        "site_id": d.site_id,
        "device_id": d.device_id,
        "size": d.size,
        "truncated": d.size > len(d.raw),
        "detail": d.detail,
        "raw_base64": base64.b64encode(d.raw).decode("ascii"),
    }


@router.get("")
async def list_dead_letters(
    platform: PlatformDep,
    _: Staff,
    reason: str | None = Query(None, min_length=1, max_length=40, pattern=r"^[a-z_]+$"),
    since: datetime | None = None,
    after: int | None = Query(None, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Refused messages, oldest first, filtered by reason and time, with counts by reason."""
    if since is not None and since.tzinfo is None:
        raise ApiProblem(422, "validation_error", "since needs a timezone (e.g. 2026-01-05T09:00:00Z)")
    book = DeadLetterBook(platform.store)
    letters = await book.list(reason, since, after, limit)
    items = [dead_letter_view(d) for d in letters]
    return {
        "items": items,
        "next_after": items[-1]["id"] if len(items) == limit else None,
        "counts": await book.counts(since),
    }
