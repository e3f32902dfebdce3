"""Drawdowns and repayments (borrower, Idempotency-Key required), statement and credit events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.borrower_request import borrower_request, borrower_route
from api.deps import CurrentPrincipal, PlatformDep, VisibleFacility
from api.idempotency import answered, key_problem, keyed_request
from api.principal import Principal
from api.schemas import MoneyCreate, instant
from api.views import posting_view, statement_view, summary_view
from ledger.core.errors import InvalidReference
from ledger.credit import Answer, KeyedRequest, MoneyResult
from ledger.store.port import RequestKeyInFlight, RequestKeyReused

router = APIRouter(prefix="/facilities/{facility_id}", tags=["money"])


async def once(
    principal: Principal,
    key: str | None,
    request: Request,
    body: dict[str, Any],
    run: Callable[[KeyedRequest], Awaitable[Answer]],
    render: Callable[[Any], tuple[int, dict[str, Any]]],
) -> Response:
    """Run a money-moving request once per Idempotency-Key (rules in api/idempotency.py)."""
    keyed = keyed_request(principal, key, request, body, render)
    try:
        return answered(await run(keyed))
    except (RequestKeyInFlight, RequestKeyReused) as e:
        raise key_problem(e) from e


def money_view(r: MoneyResult) -> tuple[int, dict[str, Any]]:
    return 201, {"posting": posting_view(r.posting), "facility": summary_view(r.summary)}


@borrower_route(router, "/drawdowns", MoneyCreate)
async def draw(request: Request) -> Response:
    """Borrow `amount` now, within the availability at this instant.

    Send an `Idempotency-Key` header (400 without one). The same key with the same request
    replays the stored answer (header `Idempotent-Replayed: true`), refusals included; with
    another request it is 422; while the first request with the key is still running, 409.
    """
    call, body, idempotency_key = await borrower_request(request, MoneyCreate)

    async def run(keyed: KeyedRequest) -> Answer:
        return await call.platform.credit.draw_keyed(call.facility_id, body.amount, keyed)

    return await once(call.principal, idempotency_key, request, {"amount": str(body.amount)}, run, money_view)


@borrower_route(router, "/repayments", MoneyCreate)
async def repay(request: Request) -> Response:
    """Repay `amount`: accrued interest first, then fees, then principal.

    Send an `Idempotency-Key` header (400 without one). The same key with the same request
    replays the stored answer (header `Idempotent-Replayed: true`), refusals included; with
    another request it is 422; while the first request with the key is still running, 409.
    """
    call, body, idempotency_key = await borrower_request(request, MoneyCreate)

    async def run(keyed: KeyedRequest) -> Answer:
        return await call.platform.credit.repay_keyed(call.facility_id, body.amount, keyed)

    return await once(call.principal, idempotency_key, request, {"amount": str(body.amount)}, run, money_view)


@router.get("/statement")
async def statement(
    facility_id: VisibleFacility,
    platform: PlatformDep,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Postings with running balances for [start, end)."""
    start, end = instant(start, "start"), instant(end, "end")
    if end <= start:
        raise InvalidReference("end must be after start")
    return statement_view(await platform.credit.statement(facility_id, start, end))


@router.get("/events")
async def events(
    facility_id: VisibleFacility,
    platform: PlatformDep,
    _: CurrentPrincipal,
    after: int = Query(0, ge=0, le=2**63 - 1),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Credit events (margin calls, freezes, cures, releases), oldest first, keyset by id."""
    rows = await platform.credit.events(facility_id, after, limit)
    items = [{**r, "at": r["at"].isoformat()} for r in rows]
    return {"items": items, "next_after": items[-1]["event_id"] if items else after}
