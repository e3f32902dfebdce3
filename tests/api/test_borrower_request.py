"""The money routes parse their requests by hand (api/borrower_request.py): same answers as FastAPI.

A reference app declares the same route the FastAPI way (path parameter, header parameters, body
model, a dependency doing the borrower checks); every request below must get the same status
and the same problem body from both. And /openapi.json must still document what the
signatures no longer declare.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse

from api import problems
from api.borrower_request import BorrowerCall, borrower_request, borrower_route
from api.deps import FacilityId, authenticate, has_role, visible_facility
from api.main import create_app
from api.platform import Platform
from api.principal import Principal
from api.schemas import MoneyCreate, ReleaseCreate

TOKENS = {
    "b1": Principal("t-b1", "borrower", "F1"),
    "b2": Principal("t-b2", "borrower", "F2"),
    "cm": Principal("t-cm", "collateral_manager", None),
}


class Tokens:
    async def authenticate(self, secret: str) -> Principal | None:
        return TOKENS.get(secret)


async def _reference_call(
    request: Request, facility_id: FacilityId, authorization: Annotated[str | None, Header()] = None
) -> BorrowerCall:
    platform: Platform = request.app.state.platform
    principal = has_role(await authenticate(platform, authorization), "borrower")
    return BorrowerCall(platform, principal, visible_facility(principal, facility_id))


def _app() -> FastAPI:
    app = FastAPI()
    app.state.platform = Platform(None, None, None, Tokens(), None)  # type: ignore[arg-type]
    problems.install(app)
    router = APIRouter(prefix="/facilities/{facility_id}")

    @router.post("/ref")
    async def reference(
        call: Annotated[BorrowerCall, Depends(_reference_call)],
        body: MoneyCreate,
        key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
    ) -> dict[str, Any]:
        return {"facility": call.facility_id, "amount": str(body.amount), "key": key}

    @router.post("/new")
    async def by_hand(request: Request) -> dict[str, Any]:
        call, body, key = await borrower_request(request, MoneyCreate)
        return {"facility": call.facility_id, "amount": str(body.amount), "key": key}

    app.include_router(router)
    return app


JSON = {"content-type": "application/json"}
AUTH = {"authorization": "Bearer b1"}
GOOD = b'{"amount": "10.00"}'

CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("ok", "F1", AUTH | JSON | {"Idempotency-Key": "k"}, GOOD),
    ("ok without key", "F1", AUTH | JSON, GOOD),
    ("no content type", "F1", AUTH, GOOD),
    ("ok, json with charset", "F1", AUTH | {"content-type": "application/json; charset=utf-8"}, GOOD),
    ("ok, +json", "F1", AUTH | {"content-type": "application/merge-patch+json"}, GOOD),
    ("no token", "F1", JSON, GOOD),
    ("not a bearer token", "F1", {"authorization": "Basic b1"} | JSON, GOOD),
    ("unknown token", "F1", {"authorization": "Bearer nope"} | JSON, GOOD),
    ("collateral manager", "F1", {"authorization": "Bearer cm"} | JSON, GOOD),
    ("another borrower's facility", "F2", AUTH | JSON, GOOD),
    ("unknown facility", "F9", AUTH | JSON, GOOD),
    ("bad facility id", "F%20", AUTH | JSON, GOOD),
    ("facility id of 65 chars", "F" * 65, AUTH | JSON, GOOD),
    ("bad facility id, no token, bad body", "F%20", JSON, b'{"amount": 1.5}'),
    ("no token, bad body", "F1", JSON, b'{"amount": 1.5}'),
    ("key of 201 chars", "F1", AUTH | JSON | {"Idempotency-Key": "k" * 201}, GOOD),
    ("key of 201 chars and bad body", "F1", AUTH | JSON | {"Idempotency-Key": "k" * 201}, b"{}"),
    ("empty body", "F1", AUTH | JSON, b""),
    ("malformed JSON", "F1", AUTH | JSON, b"{not json"),
    ("malformed JSON, no token", "F1", JSON, b"{not json"),
    ("NaN", "F1", AUTH | JSON, b'{"amount": NaN}'),
    ("not UTF-8", "F1", AUTH | JSON, b'\xff\xfe{"am'),
    ("nested 50k deep", "F1", AUTH | JSON, b"[" * 50_000 + b"]" * 50_000),
    ("text/plain", "F1", AUTH | {"content-type": "text/plain"}, GOOD),
    ("float amount", "F1", AUTH | JSON, b'{"amount": 0.1}'),
    ("extra member", "F1", AUTH | JSON, b'{"amount": "1.00", "to": "me"}'),
    ("list", "F1", AUTH | JSON, b"[1, 2]"),
    ("null", "F1", AUTH | JSON, b"null"),
    ("string", "F1", AUTH | JSON, b'"1.00"'),
]


def _comparable(r: httpx.Response) -> tuple[int, Any]:
    body = r.json()
    if isinstance(body, dict) and "errors" in body:
        body["errors"] = sorted(body["errors"], key=json.dumps)  # FastAPI's order is its own
    return r.status_code, body


@pytest.mark.parametrize(("name", "fid", "headers", "body"), CASES, ids=[c[0] for c in CASES])
async def test_same_answers_as_fastapi(name, fid, headers, body):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as c:
        ref = await c.post(f"/facilities/{fid}/ref", headers=headers, content=body)
        new = await c.post(f"/facilities/{fid}/new", headers=headers, content=body)
    assert _comparable(new) == _comparable(ref), name


def _without_none(x: Any) -> Any:
    """FastAPI writes its OpenAPI document without None members (e.g. `default: null`)."""
    if isinstance(x, dict):
        return {k: _without_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_without_none(v) for v in x]
    return x


@pytest.mark.parametrize(
    ("path", "model"),
    [("drawdowns", MoneyCreate), ("repayments", MoneyCreate), ("releases", ReleaseCreate)],
)
def test_openapi_documents_what_the_signature_does_not(path, model):
    doc = create_app(None).openapi()
    op = doc["paths"][f"/v1/facilities/{{facility_id}}/{path}"]["post"]
    params = {(p["in"], p["name"]): p for p in op["parameters"]}
    assert set(params) == {
        ("path", "facility_id"),
        ("header", "Idempotency-Key"),
        ("header", "authorization"),
    }
    assert params[("path", "facility_id")]["required"] is True
    assert params[("path", "facility_id")]["schema"]["maxLength"] == 64
    assert params[("header", "Idempotency-Key")]["schema"]["maxLength"] == 200
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert op["requestBody"]["required"] is True
    assert schema == _without_none(model.model_json_schema()) and "$defs" not in schema
    assert schema["additionalProperties"] is False


def test_a_request_route_takes_the_request_alone():
    router = APIRouter()

    async def two(request: Request, other: int) -> JSONResponse:  # pragma: no cover - never served
        return JSONResponse({})

    with pytest.raises(TypeError, match="must take the Request alone"):
        borrower_route(router, "/x", MoneyCreate)(two)


async def test_a_request_route_keeps_the_apps_error_handlers():
    """Served without FastAPI's request handler, the route's errors still become problem+json."""
    app = _app()
    router = APIRouter(prefix="/facilities/{facility_id}")

    @borrower_route(router, "/lean", MoneyCreate)
    async def lean(request: Request) -> JSONResponse:
        call, body, key = await borrower_request(request, MoneyCreate)
        return JSONResponse({"facility": call.facility_id, "amount": str(body.amount), "key": key}, 201)

    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for name, fid, headers, body in CASES:
            ref = await c.post(f"/facilities/{fid}/ref", headers=headers, content=body)
            new = await c.post(f"/facilities/{fid}/lean", headers=headers, content=body)
            expected = (201 if ref.status_code == 200 else ref.status_code, ref.json())
            assert _comparable(new) == (expected[0], _comparable(ref)[1]), name
            if new.status_code >= 400:
                assert new.headers["content-type"] == "application/problem+json", name
