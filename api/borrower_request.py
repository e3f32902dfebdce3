"""A borrower's money-moving request (drawdown, repayment, release), parsed and checked by hand.

FastAPI's per-request parameter machinery (`solve_dependencies`: a path parameter, two headers,
a body model and a dependency) cost about half of the web stack's share of a money request
(docs/scaling.md). These routes take the bare `Request` instead and run the same checks here,
in FastAPI's order and with FastAPI's answers:

1. the body is read and, for a JSON content type (application/json or application/*+json),
   decoded: malformed JSON is a 422 (`json_invalid`), a body that cannot be parsed at all
   (e.g. nested too deep) a 400; any other body, or one without a content type, is left as
   bytes and fails validation (FastAPI's `strict_content_type`, on by default);
2. the facility id in the path is validated (422, and no authentication is attempted, as
   FastAPI skips a dependency whose parameters are invalid);
3. with a valid id: bearer token (401), the borrower role (403), the borrower's own facility
   (404);
4. the `Idempotency-Key` header (at most 200 characters) and the body model: their errors
   together in one 422;
5. the route itself then answers a missing key with 400 (api/idempotency.py).

`openapi_extra` documents what the signature no longer declares (`openapi`), so /docs shows the
same parameters and body as before; tests/api/test_borrower_request.py holds the two together.
"""

from __future__ import annotations

import email.message
import functools
import inspect
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api.deps import FACILITY_ID_MAX, FACILITY_ID_PATTERN, authenticate, has_role, visible_facility
from api.platform import Platform
from api.principal import Principal

M = TypeVar("M", bound=BaseModel)

IDEMPOTENCY_KEY_MAX = 200
_FACILITY_ID: TypeAdapter[str] = TypeAdapter(
    Annotated[str, Field(min_length=1, max_length=FACILITY_ID_MAX, pattern=FACILITY_ID_PATTERN)]
)
_KEY: TypeAdapter[str | None] = TypeAdapter(Annotated[str | None, Field(max_length=IDEMPOTENCY_KEY_MAX)])
_MISSING = object()


@dataclass(frozen=True, slots=True)
class BorrowerCall:
    """A borrower acting on one of its own facilities."""

    platform: Platform
    principal: Principal
    facility_id: str


def _located(where: tuple[str, ...], error: ValidationError) -> list[dict[str, Any]]:
    return [{**e, "loc": (*where, *e["loc"])} for e in error.errors(include_url=False)]


@functools.lru_cache(maxsize=64)
def _is_json(content_type: str) -> bool:
    """FastAPI's test (application/json or application/*+json, parameters allowed), cached: a
    client sends the same one or two content types every time."""
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def _body(request: Request) -> Any:
    """The decoded JSON body; the raw bytes for another content type; `_MISSING` when empty."""
    raw = await request.body()
    if not raw:
        return _MISSING
    content_type = request.headers.get("content-type")
    if not content_type or not _is_json(content_type):  # FastAPI's strict_content_type (default)
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", e.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.msg},
                }
            ]
        ) from e
    except Exception as e:  # not UTF-8 at all, or nested beyond the recursion limit
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e


async def borrower_request(request: Request, model: type[M]) -> tuple[BorrowerCall, M, str | None]:
    """The caller (a borrower on its own facility), the validated body and the Idempotency-Key."""
    body = await _body(request)
    errors: list[dict[str, Any]] = []
    call: BorrowerCall | None = None
    try:
        facility_id = _FACILITY_ID.validate_python(request.path_params["facility_id"])
    except ValidationError as e:
        errors += _located(("path", "facility_id"), e)
    else:
        platform: Platform = request.app.state.platform
        principal = has_role(await authenticate(platform, request.headers.get("authorization")), "borrower")
        call = BorrowerCall(platform, principal, visible_facility(principal, facility_id))
    key: str | None = None
    try:
        key = _KEY.validate_python(request.headers.get("idempotency-key"))
    except ValidationError as e:
        errors += _located(("header", "Idempotency-Key"), e)
    parsed: M | None = None
    if body is _MISSING:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
    else:
        try:
            parsed = model.model_validate(body, from_attributes=True)  # as FastAPI validates a body
        except ValidationError as e:
            errors += _located(("body",), e)
    if errors or call is None or parsed is None:
        raise RequestValidationError(errors)
    return call, parsed, key


class RequestRoute(APIRoute):
    """An APIRoute served as its endpoint alone, a `Request -> Response` coroutine.

    Routing, /docs and the app's exception handlers stay; FastAPI's request handler (reading
    the body, solving the dependencies, serialising the result) is not run: about a fifth of
    what a money request still cost in the web stack once its parameters were parsed by hand.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if list(inspect.signature(self.endpoint).parameters) != ["request"]:
            raise TypeError(f"{self.endpoint.__name__} must take the Request alone to be a RequestRoute")
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)


E = TypeVar("E", bound=Callable[[Request], Coroutine[Any, Any, Response]])


def borrower_route(router: APIRouter, path: str, model: type[BaseModel]) -> Callable[[E], E]:
    """`POST {path}` for a borrower's keyed request: answered 201 (or a problem), documented
    with `model` as its body (`openapi`), served as a `RequestRoute`."""

    def register(endpoint: E) -> E:
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            status_code=201,
            openapi_extra=openapi(model),
            route_class_override=RequestRoute,
        )
        return endpoint

    return register


def openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route parsed by `borrower_request`: what its signature would declare."""
    return {
        "parameters": [
            {
                "name": "facility_id",
                "in": "path",
                "required": True,
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": FACILITY_ID_MAX,
                    "pattern": FACILITY_ID_PATTERN,
                    "title": "Facility Id",
                },
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "required on every money-moving request (400 without one)",
                "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX, "title": "Idempotency-Key"},
            },
            {
                "name": "authorization",
                "in": "header",
                "required": False,
                "description": "Bearer token of the facility's borrower",
                "schema": {"type": "string", "title": "Authorization"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        },
    }
