"""Errors -> RFC 9457 problem+json, in one place. Every error class has a stable `type`.

Ledger errors map by class (most specific first); request validation is 422; unknown routes
404; anything unexpected is a 500 problem without internals (and is a bug to fix).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.core import errors as E

log = logging.getLogger("pledge.api")
TYPE_BASE = "https://pledge.dev/problems/"

# (error class, HTTP status), most specific first
STATUS: tuple[tuple[type[E.LedgerError], int], ...] = (
    (E.NotFound, 404),
    (E.DoublePledge, 409),
    (E.Conflict, 409),
    (E.InvalidInput, 422),
    (E.InsufficientAvailability, 409),
    (E.Overpayment, 422),
    (E.ReleaseRefused, 409),
    (E.FacilityFrozen, 409),
    (E.FacilityInactive, 409),
    (E.CreditError, 409),
    (E.IdempotencyConflict, 409),
    (E.JournalCorrupted, 500),
    (E.LedgerError, 400),
)


class ApiProblem(Exception):
    """An HTTP-level problem raised by the API itself (auth, idempotency, bad headers)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {**extra, "type": TYPE_BASE + code, "title": title, "status": status, "detail": detail}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def status_of(err: E.LedgerError) -> int:
    for cls, status in STATUS:
        if isinstance(err, cls):
            return status
    return 400


_RESERVED = {"type", "title", "status", "detail", "instance", "code"}


def ledger_problem(err: E.LedgerError) -> JSONResponse:
    """The error's facts become extension members; names RFC 9457 reserves get a `fact_` prefix."""
    facts = {
        (f"fact_{k}" if k in _RESERVED else k): v
        for k, v in err.facts.items()
        if isinstance(v, str | int | bool | None)
    }
    return problem(status_of(err), err.code, type(err).__name__, err.message, **facts)


def install(app: FastAPI) -> None:
    @app.exception_handler(E.LedgerError)
    async def _ledger(_: Request, err: E.LedgerError) -> JSONResponse:
        return ledger_problem(err)

    @app.exception_handler(ApiProblem)
    async def _api(_: Request, err: ApiProblem) -> JSONResponse:
        return problem(err.status, err.code, err.code.replace("_", " "), err.detail, **err.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in err.errors()
        ]
        return problem(
            422, "validation_error", "Request validation failed", "the request is not valid", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            err.status_code, "http_error"
        )
        title = "Content Too Large" if err.status_code == 413 else str(err.detail)
        return problem(err.status_code, code, title, str(err.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return problem(500, "internal_error", "Internal error", "an unexpected error occurred; it was logged")
