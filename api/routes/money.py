"""Drawdowns and repayments (borrower, Idempotency-Key required), statement and credit events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import BorrowerOnly, CurrentPrincipal, IdempotencyKey, PlatformDep, VisibleFacility
from api.idempotency import KeyInFlight, KeyReused, request_hash
from api.platform import Platform
from api.principal import Principal
from api.problems import ApiProblem, ledger_problem
from api.schemas import MoneyCreate, instant
from api.views import posting_view, statement_view, summary_view
from ledger.core.errors import InvalidReference, LedgerError
from ledger.credit import MoneyResult, OnCommit

R = TypeVar("R")

router = APIRouter(prefix="/facilities/{facility_id}", tags=["money"])


async def idempotent(
    platform: Platform,
    principal: Principal,
    key: str | None,
    request: Request,
    body: dict[str, Any],
    run: Callable[[OnCommit], Awaitable[R]],
    render: Callable[[R], tuple[int, dict[str, Any]]],
) -> JSONResponse:
    """Run `run` once per Idempotency-Key (rules in api/idempotency.py).

    `run` receives an `on_commit` hook that the credit service calls inside its transaction,
    so the stored response commits with the money movement it describes.
    """
    if not key:
        raise ApiProblem(400, "idempotency_key_missing", "this request needs an Idempotency-Key header")
    scope, now = principal.token_id, platform.clock()
    req = request_hash(request.method, request.url.path, body)
    try:
        replay = await platform.idempotency.claim(scope, key, req, now)
    except KeyReused as e:
        raise ApiProblem(
            422, "idempotency_key_reused", "this Idempotency-Key was used with a different request"
        ) from e
    except KeyInFlight as e:
        raise ApiProblem(
            409, "idempotency_key_in_flight", "a request with this Idempotency-Key is still being processed"
        ) from e
    if replay is not None:
        return JSONResponse(
            replay.body,
            status_code=replay.status_code,
            media_type="application/problem+json" if replay.status_code >= 400 else None,
            headers={"Idempotent-Replayed": "true"},
        )

    async def on_commit(tx: Any, result: Any) -> None:
        status, out = render(result)
        await platform.idempotency.complete_in(tx, scope, key, status, out)

    try:
        result = await run(on_commit)
    except LedgerError as e:
        try:
            resp = ledger_problem(e)
            await platform.idempotency.complete(scope, key, resp.status_code, _body(resp))
        except BaseException:
            await platform.idempotency.release(scope, key)
            raise
        return resp
    except BaseException:
        await platform.idempotency.release(scope, key)
        raise
    status, out = render(result)
    return JSONResponse(out, status_code=status)


def posting_key(principal: Principal, key: str | None) -> str | None:
    """The key a posting carries: scoped by token, like the idempotency record."""
    return None if key is None else f"{principal.token_id}:{key}"


def money_view(r: MoneyResult) -> tuple[int, dict[str, Any]]:
    return 201, {"posting": posting_view(r.posting), "facility": summary_view(r.summary)}


def _body(resp: JSONResponse) -> Any:
    import json

    return json.loads(bytes(resp.body))


@router.post("/drawdowns", status_code=201)
async def draw(
    facility_id: VisibleFacility,
    body: MoneyCreate,
    request: Request,
    platform: PlatformDep,
    principal: BorrowerOnly,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Borrow `amount` now, within the availability at this instant."""

    async def run(on_commit: OnCommit) -> MoneyResult:
        return await platform.credit.draw(
            facility_id, body.amount, posting_key(principal, idempotency_key), on_commit
        )

    return await idempotent(
        platform, principal, idempotency_key, request, {"amount": str(body.amount)}, run, money_view
    )


@router.post("/repayments", status_code=201)
async def repay(
    facility_id: VisibleFacility,
    body: MoneyCreate,
    request: Request,
    platform: PlatformDep,
    principal: BorrowerOnly,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Repay `amount`: accrued interest first, then fees, then principal."""

    async def run(on_commit: OnCommit) -> MoneyResult:
        return await platform.credit.repay(
            facility_id, body.amount, posting_key(principal, idempotency_key), on_commit
        )

    return await idempotent(
        platform, principal, idempotency_key, request, {"amount": str(body.amount)}, run, money_view
    )


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
