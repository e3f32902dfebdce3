"""Every error is an RFC 9457 problem+json with a stable `type`, and no input yields a 500.

Three layers:
1. every LedgerError class (found by walking the hierarchy, so a new class fails until it gets a
   row in EXPECTED) rendered by the app's real handler, through a route that raises it;
2. every class the API can surface, provoked over HTTP by what a caller can really send;
3. malformed requests of every shape (validation, routing, methods, JSON, query strings, headers),
   and a hypothesis test posting random JSON to the money routes.

Classes that no request can provoke (and why) are listed in UNREACHABLE_OVER_HTTP; the test
`test_every_error_class_is_provoked_over_http_or_explained` keeps that list honest.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from api.main import create_app
from api.problems import TYPE_BASE
from ledger.core import errors as E
from ledger.core.credit_line import InvalidLtvLines
from ledger.core.interest import InvalidPeriod
from ledger.core.posting import UnbalancedPosting, UnknownAccount, WrongFacility
from ledger.core.pricing import UnknownTier

D = Decimal
PROBLEM = "application/problem+json"
SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # pure HTTP-layer rules

# One sample of every class and the HTTP status the API must answer with.
EXPECTED: dict[type[E.LedgerError], tuple[E.LedgerError, int]] = {
    E.LedgerError: (E.LedgerError("something the ledger refused"), 400),
    E.InvalidInput: (E.InvalidInput("bad input"), 422),
    E.InvalidAmount: (E.InvalidAmount("amount", "abc", "is not a number"), 422),
    E.CurrencyMismatch: (E.CurrencyMismatch("EUR", "USD", "price of SKU CU-CATH"), 422),
    E.InvalidReference: (E.InvalidReference("end must be after start"), 422),
    UnknownTier: (UnknownTier("Z", ("A", "B", "C")), 422),
    InvalidPeriod: (InvalidPeriod(dt.date(2026, 2, 1), dt.date(2026, 1, 1)), 422),
    InvalidLtvLines: (InvalidLtvLines(D("0.9"), D("0.8")), 422),
    UnknownAccount: (UnknownAccount("petty_cash"), 422),
    WrongFacility: (WrongFacility("F1", "F2"), 422),
    E.NotFound: (E.NotFound("X1"), 404),
    E.UnknownSku: (E.UnknownSku("NOPE"), 404),
    E.UnknownSite: (E.UnknownSite("NOPE"), 404),
    E.UnknownZone: (E.UnknownZone("NOPE"), 404),
    E.UnknownFacility: (E.UnknownFacility("NOPE"), 404),
    E.UnknownBorrower: (E.UnknownBorrower("NOPE"), 404),
    E.UnknownLot: (E.UnknownLot("NOPE"), 404),
    E.Conflict: (E.Conflict("contradicts stored state"), 409),
    E.DuplicateEpc: (E.DuplicateEpc("E2801170", "L000001"), 409),
    E.DuplicateId: (E.DuplicateId("site", "SH1"), 409),
    E.DoublePledge: (E.DoublePledge("L000001", "E2801170", "F1", "F2"), 409),
    E.InvalidTransition: (E.InvalidTransition("L000001", "release_authorised", "release_authorisation"), 409),
    E.CreditError: (E.CreditError("refused", facility_id="F1"), 409),
    E.FacilityFrozen: (E.FacilityFrozen("facility F1 is frozen", facility_id="F1"), 409),
    E.FacilityInactive: (E.FacilityInactive("facility F1 is not active", facility_id="F1"), 409),
    E.InsufficientAvailability: (E.InsufficientAvailability("F1", D("10.00"), D("5.00")), 409),
    E.Overpayment: (E.Overpayment("F1", D("10.00"), D("5.00")), 422),
    E.ReleaseRefused: (E.ReleaseRefused("F1", D("10.00"), "BB would not cover"), 409),
    E.IdempotencyConflict: (E.IdempotencyConflict("key already booked", key="k"), 409),
    E.JournalCorrupted: (E.JournalCorrupted("hash chain broken at seq 7", seq=7), 500),
    UnbalancedPosting: (UnbalancedPosting("P-1", D("1.00"), D("2.00")), 400),
}

# Codes no request can provoke, and why. Everything else is provoked in test_surfaced_errors.
UNREACHABLE_OVER_HTTP = {
    "ledger_error": "abstract root",
    "invalid_input": "abstract parent; its concrete subclasses are provoked",
    "not_found": "abstract parent",
    "conflict": "abstract parent",
    "credit_error": "abstract parent",
    "invalid_period": "the statement route refuses end <= start first (invalid_reference)",
    "invalid_ltv_lines": "Facility() refuses warning >= liquidation first (invalid_reference)",
    "unknown_account": "posting lines are built by the service, never from a request",
    "wrong_facility": "balances are folded per facility by the service",
    "unbalanced_posting": "postings are built balanced by the builders",
    "journal_corrupted": "never raised: verify() reports a break in the audit body instead",
    "idempotency_conflict": "a key can book one posting; the API scopes posting keys by token first",
    "invalid_transition": "provoked in test_a_second_release_of_the_same_lot_is_409",
}


def ledger_error_classes() -> set[type[E.LedgerError]]:
    for mod in pkgutil.walk_packages(ledger.__path__, "ledger."):
        importlib.import_module(mod.name)  # so that every subclass is defined
    found, todo = set(), [E.LedgerError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def assert_problem(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (code, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert body["type"] == TYPE_BASE + code and body["status"] == status, body
    assert body["title"] and body["detail"]
    return body


def test_every_error_class_has_a_row_and_a_code_of_its_own():
    classes = ledger_error_classes()
    assert classes - EXPECTED.keys() == set(), "new LedgerError classes: add them to EXPECTED"
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes), "two classes share a problem `type`"
    assert all(type(sample) is cls for cls, (sample, _) in EXPECTED.items())


def raising_app(err: E.LedgerError):
    router = APIRouter()

    @router.get("/raise")
    async def _raise() -> None:
        raise err

    # The problem handlers need no database: a stand-in platform carries only the extra router.
    return create_app(SimpleNamespace(extra={"routers": [router]}))  # type: ignore[arg-type]


RESERVED_MEMBERS = {"type", "title", "status", "detail", "instance", "code"}


@pytest.mark.parametrize(
    "cls",
    [pytest.param(cls, id=cls.code) for cls in EXPECTED],
)
async def test_each_error_class_renders_as_its_problem(cls):
    err, status = EXPECTED[cls]
    transport = httpx.ASGITransport(app=raising_app(err))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/v1/raise")
    body = assert_problem(r, status, cls.code)
    assert body["title"] == cls.__name__ and body["detail"] == err.message
    for name, value in err.facts.items():  # the facts travel as members (strings: Decimals were str'd)
        if isinstance(value, str):  # names RFC 9457 reserves travel with a fact_ prefix
            member = (
                f"fact_{name}" if name in {"type", "title", "status", "detail", "instance", "code"} else name
            )
            assert body[member] == value, name


def test_every_error_class_is_provoked_over_http_or_explained():
    all_codes = {cls.code for cls in EXPECTED}
    provoked = {code for code, *_ in STEPS if code}
    assert provoked.isdisjoint(UNREACHABLE_OVER_HTTP)
    assert provoked | UNREACHABLE_OVER_HTTP.keys() == all_codes


CU_EPC = "E28011700000000000000001"  # lot L000001 of F1, pledged
LOT = {"sku_id": "CU-CATH", "quantity": "5", "site_id": "SH1", "zone_id": "SH1-A"}
NEW_FACILITY = {
    "facility_id": "F9",
    "borrower_id": "B1",
    "currency": "EUR",
    "commitment": "1000.00",
    "terms": {"CU-CATH": {"advance_rate": "0.5"}},
    "approved_sites": ["SH1"],
}

# (code, status, who, method, path, json, facts expected in the body), run in this order on one
# world: later steps rely on earlier ones (1,000.00 drawn before the overpayment, the rest of the
# availability drawn before the refused release, which comes before the price crash). Steps with
# no code only set the scene.
STEPS: list[tuple[str, int, str, str, str, dict | None, dict[str, Any]]] = [
    ("unknown_facility", 404, "admin", "GET", "/v1/facilities/NOPE", None, {"id": "NOPE"}),
    ("unknown_sku", 404, "collateral_manager", "GET", "/v1/prices/NOPE", None, {"id": "NOPE"}),
    (
        "unknown_site",
        404,
        "collateral_manager",
        "POST",
        "/v1/zones",
        {"zone_id": "Z9", "site_id": "NOPE", "name": "x"},
        {"id": "NOPE"},
    ),
    (
        "unknown_zone",
        404,
        "collateral_manager",
        "POST",
        "/v1/facilities/F1/lots",
        {"lots": [{**LOT, "lot_id": "LZ1", "epc": "AB01", "zone_id": "NOPE"}]},
        {"id": "NOPE"},
    ),
    ("unknown_borrower", 404, "admin", "POST", "/v1/facilities", {**NEW_FACILITY, "borrower_id": "NOPE"}, {}),
    ("unknown_lot", 404, "borrower", "POST", "/v1/facilities/F1/releases", {"lot_ids": ["NOPE"]}, {}),
    ("invalid_amount", 422, "borrower", "POST", "/v1/facilities/F1/drawdowns", {"amount": "0"}, {}),
    (
        "invalid_amount",
        422,
        "borrower",
        "POST",
        "/v1/facilities/F1/drawdowns",
        {"amount": "10.001"},
        {"field": "drawdown amount"},
    ),
    (
        "currency_mismatch",
        422,
        "collateral_manager",
        "POST",
        "/v1/prices",
        {"sku_id": "CU-CATH", "price": "8000", "currency": "USD"},
        {"expected": "EUR", "got": "USD"},
    ),
    (
        "invalid_reference",
        422,
        "borrower",
        "GET",
        "/v1/facilities/F1/statement?start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z",
        None,
        {},
    ),
    ("unknown_tier", 422, "admin", "POST", "/v1/facilities", {**NEW_FACILITY, "tier": "Z"}, {"tier": "Z"}),
    (
        "duplicate_epc",
        409,
        "collateral_manager",
        "POST",
        "/v1/facilities/F1/lots",
        {"lots": [{**LOT, "lot_id": "LDUP", "epc": CU_EPC}]},
        {"epc": CU_EPC, "existing_lot": "L000001"},
    ),
    ("duplicate_id", 409, "collateral_manager", "POST", "/v1/sites", {"site_id": "SH1", "name": "Other"}, {}),
    (
        "double_pledge",
        409,
        "collateral_manager",
        "POST",
        "/v1/facilities/F2/lots",
        {"lots": [{**LOT, "lot_id": "LDBL", "epc": CU_EPC}]},
        {"pledged_to": "F1", "requested_by": "F2"},
    ),
    (
        "insufficient_availability",
        409,
        "borrower",
        "POST",
        "/v1/facilities/F1/drawdowns",
        {"amount": "10000000.00"},
        {"requested": "10000000.00", "facility_id": "F1"},
    ),
    ("", 201, "borrower", "POST", "/v1/facilities/F1/drawdowns", {"amount": "1000.00"}, {}),
    (
        "overpayment",
        422,
        "borrower",
        "POST",
        "/v1/facilities/F1/repayments",
        {"amount": "2000.00"},
        {"owed": "1000.00", "offered": "2000.00"},  # refused with the exact amount owed
    ),
    ("", 201, "borrower", "POST", "/v1/facilities/F1/drawdowns", {"amount": "REST"}, {}),
    (
        "release_refused",
        409,
        "borrower",
        "POST",
        "/v1/facilities/F1/releases",
        {"lot_ids": ["L000001"]},
        {"facility_id": "F1", "repay_first": lambda v: D(v) > 0},  # says how much to repay first
    ),
    (
        "",
        201,
        "collateral_manager",
        "POST",
        "/v1/prices",
        {"sku_id": "CU-CATH", "price": "3000", "currency": "EUR"},
        {},
    ),
    ("facility_frozen", 409, "borrower", "POST", "/v1/facilities/F1/drawdowns", {"amount": "1.00"}, {}),
    (
        "facility_inactive",
        409,
        "other_borrower",
        "POST",
        "/v1/facilities/F2/drawdowns",
        {"amount": "1.00"},
        {},
    ),
]


async def test_surfaced_errors(api):
    """Each class the API can surface, provoked by a request a caller can really send."""
    async with api.platform.store.transaction() as tx:  # a closed facility: no route closes one yet
        await tx.update_credit_states([{"facility_id": "F2", "status": "closed"}])
    wrong = []
    for n, (code, status, who, method, path, body, facts) in enumerate(STEPS):
        if body == {"amount": "REST"}:
            rest = (await api.client.get("/v1/facilities/F1", headers=api.auth(who))).json()["availability"]
            body = {"amount": rest}
        headers = {**api.auth(who), "Idempotency-Key": f"step-{n}"}
        r = await api.client.request(method, path, json=body, headers=headers)
        if not code:
            assert r.status_code == status, (path, r.text)
            continue
        try:
            got = assert_problem(r, status, code)
            for name, want in facts.items():
                assert want(got.get(name)) if callable(want) else got.get(name) == want, (name, got)
        except AssertionError as e:
            wrong.append(f"{code}: {e}")
    assert wrong == [], "\n".join(wrong)


DRAW = "/v1/facilities/F1/drawdowns"
POS = "/v1/facilities/F1/positions"
JSON = {"content-type": "application/json"}

# (what, method, url, request kwargs, status, problem code or None for a 2xx)
SHAPES: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
    ("float amount", "POST", DRAW, {"json": {"amount": 0.1}}, 422, "validation_error"),
    ("amount not a number", "POST", DRAW, {"json": {"amount": "abc"}}, 422, "validation_error"),
    ("amount in exponent form", "POST", DRAW, {"json": {"amount": "1e5"}}, 422, "validation_error"),
    ("amount true", "POST", DRAW, {"json": {"amount": True}}, 422, "validation_error"),
    ("extra member", "POST", DRAW, {"json": {"amount": "1.00", "to": "me"}}, 422, "validation_error"),
    ("no amount", "POST", DRAW, {"json": {}}, 422, "validation_error"),
    ("body is a list", "POST", DRAW, {"json": [1, 2]}, 422, "validation_error"),
    ("body is a string", "POST", DRAW, {"json": "1.00"}, 422, "validation_error"),
    ("body is null", "POST", DRAW, {"content": b"null", "headers": JSON}, 422, "validation_error"),
    ("empty body", "POST", DRAW, {"content": b"", "headers": JSON}, 422, "validation_error"),
    ("malformed JSON", "POST", DRAW, {"content": b"{not json", "headers": JSON}, 422, "validation_error"),
    (
        "JSON with NaN",
        "POST",
        DRAW,
        {"content": b'{"amount": NaN}', "headers": JSON},
        422,
        "validation_error",
    ),
    ("body not UTF-8", "POST", DRAW, {"content": b'\xff\xfe{"am', "headers": JSON}, 422, "validation_error"),
    (
        "JSON nested 50k deep",
        "POST",
        DRAW,
        {"content": b"[" * 50_000 + b"]" * 50_000, "headers": JSON},
        400,
        "http_error",
    ),
    (
        "text/plain body",
        "POST",
        DRAW,
        {"content": b'{"amount": "1.00"}', "headers": {"content-type": "text/plain"}},
        422,
        "validation_error",
    ),
    (
        "Idempotency-Key of 201 chars",
        "POST",
        DRAW,
        {"json": {"amount": "1.00"}, "headers": {"Idempotency-Key": "k" * 201}},
        422,
        "validation_error",
    ),
    ("unknown route", "GET", "/v1/nope", {}, 404, "not_found"),
    ("unknown route outside /v1", "GET", "/nope", {}, 404, "not_found"),
    ("unknown sub-resource", "GET", "/v1/facilities/F1/nope", {}, 404, "not_found"),
    ("encoded path traversal", "GET", "/v1/facilities/..%2F..%2Fetc", {}, 404, "not_found"),
    ("DELETE a facility", "DELETE", "/v1/facilities/F1", {}, 405, "method_not_allowed"),
    ("PATCH health", "PATCH", "/v1/health", {}, 405, "method_not_allowed"),
    ("GET a POST-only route", "GET", DRAW, {}, 405, "method_not_allowed"),
    ("PUT prices", "PUT", "/v1/prices", {}, 405, "method_not_allowed"),
    ("facility id of 65 chars", "GET", "/v1/facilities/" + "F" * 65, {}, 422, "validation_error"),
    ("non-ASCII facility id", "GET", "/v1/facilities/%E2%82%AC", {}, 422, "validation_error"),
    ("facility id not UTF-8", "GET", "/v1/facilities/%ff%fe", {}, 422, "validation_error"),
    ("negative limit", "GET", POS + "?limit=-1", {}, 422, "validation_error"),
    ("zero limit", "GET", POS + "?limit=0", {}, 422, "validation_error"),
    ("limit of 31 digits", "GET", POS + "?limit=" + "9" * 31, {}, 422, "validation_error"),
    ("limit not a number", "GET", POS + "?limit=ten", {}, 422, "validation_error"),
    ("empty limit", "GET", POS + "?limit=", {}, 422, "validation_error"),
    ("negative keyset", "GET", "/v1/facilities/F1/movements?after=-5", {}, 422, "validation_error"),
    ("as_of not a date", "GET", POS + "?as_of=yesterday", {}, 422, "validation_error"),
    ("impossible date", "GET", POS + "?as_of=2026-13-45T00:00:00Z", {}, 422, "validation_error"),
    ("as_of not UTF-8", "GET", POS + "?as_of=%ff%fe", {}, 422, "validation_error"),
    ("naive as_of", "GET", POS + "?as_of=2026-01-05T09:00:00", {}, 422, "invalid_reference"),
    ("unknown lot status", "GET", POS + "?status=lost", {}, 422, "validation_error"),
    (
        "unknown movement kind",
        "GET",
        "/v1/facilities/F1/movements?kind=teleport",
        {},
        422,
        "validation_error",
    ),
    (
        "unknown certificate format",
        "GET",
        "/v1/facilities/F1/certificate?format=xml",
        {},
        422,
        "validation_error",
    ),
    ("negative max_events", "GET", "/v1/facilities/F1/feed?max_events=-1", {}, 422, "validation_error"),
    (
        "statement without end",
        "GET",
        "/v1/facilities/F1/statement?start=2026-01-01T00:00:00Z",
        {},
        422,
        "validation_error",
    ),
    ("site id with a space", "GET", POS + "?site_id=S%20H1", {}, 422, "validation_error"),
    ("unknown query parameter, not UTF-8", "GET", POS + "?%ff%fe=%ff", {}, 200, None),
    ("query string of 30,000 chars", "GET", POS + "?x=" + "a" * 30_000, {}, 200, None),
    (
        "Idempotency-Key not UTF-8",
        "POST",
        DRAW,
        {"json": {"amount": "1.00"}, "headers": [("Idempotency-Key", b"\xff\xfe")]},
        201,
        None,
    ),
    (
        "Authorization not UTF-8",
        "GET",
        POS,
        {"headers": [("Authorization", b"Bearer \xff\xfe")]},
        401,
        "unauthenticated",
    ),
]


@SQLITE_ONLY
async def test_malformed_requests_are_problems_never_500(api):
    """Routing, methods, bodies, headers and query strings of every odd shape (HTTP layer only)."""
    wrong = []
    for what, method, url, kwargs, status, code in SHAPES:
        given = kwargs.get("headers", {})
        pairs = list(given.items()) if isinstance(given, dict) else list(given)
        base = {**api.auth("borrower"), "Idempotency-Key": f"shape-{len(wrong)}-{what}"}
        headers = [(k, v) for k, v in base.items() if k not in {name for name, _ in pairs}] + pairs
        r = await api.client.request(method, url, **{**kwargs, "headers": headers})
        try:
            if code is None:
                assert r.status_code == status, r.text[:200]
            else:
                assert_problem(r, status, code)
        except AssertionError as e:
            wrong.append(f"{what}: {e}")
    assert wrong == [], "\n".join(wrong)


# Timestamps at the edges of what Python's datetime can hold. Those marked BAD overflow when the
# store converts them to UTC (ledger/store/types.py UtcDateTime.process_bind_param:
# value.astimezone(UTC) -> OverflowError) and answer 500; the others are answered.
EARLY, LATE = "0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00"
EDGE_TIMES_OK = [
    POS + f"?as_of={EARLY}",
    POS + f"?as_of={LATE}",
    POS + "?as_of=0001-01-01T00:00:00Z",
    "/v1/facilities/F1/certificate?as_of=0001-01-01T00:00:00Z",
    f"/v1/facilities/F1/certificate?as_of={LATE}",
    "/v1/facilities/F1/movements?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z",
    f"/v1/facilities/F1/statement?start={EARLY}&end=9999-12-31T00:00:00Z",
    "/v1/prices/CU-CATH?until=9999-12-31T23:59:59Z",
]
EDGE_TIMES_BAD = [
    f"/v1/facilities/F1/certificate?as_of={EARLY}",
    f"/v1/facilities/F1/movements?since={EARLY}",
    f"/v1/facilities/F1/movements?until={LATE}",
    f"/v1/facilities/F1/statement?start=2026-01-01T00:00:00Z&end={LATE}",
    f"/v1/prices/CU-CATH?until={EARLY}",
    f"/v1/prices/CU-CATH?until={LATE}",
]


async def get_never_500(api, urls: list[str]) -> list[str]:
    wrong = []
    for url in urls:
        try:
            r = await api.client.get(url, headers=api.auth("collateral_manager"))
        except Exception as e:  # the in-process transport re-raises what the app did not handle
            wrong.append(f"{url}: raised {type(e).__name__}: {e}")
            continue
        if r.status_code >= 500:
            wrong.append(f"{url}: {r.status_code}")
    return wrong


@SQLITE_ONLY
async def test_timestamps_at_the_edges_of_time_are_answered(api):
    assert await get_never_500(api, EDGE_TIMES_OK) == []


@SQLITE_ONLY
async def test_timestamps_that_overflow_in_utc_are_422(api):
    wrong = await get_never_500(api, EDGE_TIMES_BAD)
    for at in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        body = {"sku_id": "ST-COIL", "price": "500", "currency": "EUR", "at": at}
        try:
            r = await api.client.post("/v1/prices", json=body, headers=api.auth("collateral_manager"))
            if r.status_code >= 500:
                wrong.append(f"POST /v1/prices at={at}: {r.status_code}")
        except Exception as e:
            wrong.append(f"POST /v1/prices at={at}: raised {type(e).__name__}")
    assert wrong == [], "\n".join(wrong)


@SQLITE_ONLY
async def test_a_keyset_cursor_beyond_int64_is_422(api):
    urls = [f"/v1/facilities/F1/{what}?after={2**63}" for what in ("events", "movements")]
    assert await get_never_500(api, urls) == []


@SQLITE_ONLY
async def test_position_and_movement_filters_filter(api):
    cm = api.auth("collateral_manager")

    async def lots(path: str, **params: str) -> list[str]:
        r = await api.client.get(f"/v1/facilities/F1/{path}", params=params, headers=cm)
        assert r.status_code == 200, r.text
        return [i["lot_id"] if path == "positions" else i["lot"]["lot_id"] for i in r.json()["items"]]

    every = ["L000001", "L000002", "L000003", "L000004"]
    assert await lots("positions") == every
    assert await lots("positions", site_id="SH1") == every
    assert await lots("positions", lot_id="L000002") == ["L000002"]
    assert await lots("positions", sku_id="ST-COIL") == []
    assert await lots("positions", limit="2", after="L000002") == ["L000003", "L000004"]
    assert await lots("movements", lot_id="L000003") == ["L000003"]


@SQLITE_ONLY
async def test_a_second_release_of_the_same_lot_is_409(api):
    me = api.auth("borrower")
    first = await api.client.post(
        "/v1/facilities/F1/releases", json={"lot_ids": ["L000002"]}, headers={**me, "Idempotency-Key": "r1"}
    )
    assert first.status_code == 201
    for _ in range(2):  # the answer, then its replay
        try:
            r = await api.client.post(
                "/v1/facilities/F1/releases",
                json={"lot_ids": ["L000002"]},
                headers={**me, "Idempotency-Key": "r2"},
            )
        except TypeError as e:  # the in-process transport re-raises the app's unhandled error
            pytest.fail(f"500: {e}")
        body = assert_problem(r, 409, "invalid_transition")
        assert body["lot_id"] == "L000002"


@SQLITE_ONLY
async def test_a_repayment_of_a_huge_integer_is_422(api):
    await api.platform.credit.draw("F1", D("1000.00"))
    for n, amount in enumerate((10**26, 10**40)):
        try:
            r = await api.client.post(
                "/v1/facilities/F1/repayments",
                json={"amount": amount},
                headers={**api.auth("borrower"), "Idempotency-Key": f"huge-{n}"},
            )
        except ArithmeticError as e:
            pytest.fail(f"500: {e!r}")
        assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith(PROBLEM)


TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)  # JSON-encodable
# Integers stay within 18 digits: bigger ones hit the known bug of test_a_repayment_of_a_huge_integer.
INTS = st.integers(min_value=-(10**18), max_value=10**18)
AMOUNTS = st.one_of(
    st.sampled_from(["1.00", "0", "-0", "0.001", "1e5", "NaN", "Infinity", " 1", "1_000", "", "٣", "-5.00"]),
    st.sampled_from(["999999999999999999.99", "122304.00", "122304.01", "0.01"]),
    st.decimals(min_value=-(10**7), max_value=10**7, places=2).map(str),
    INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
    TEXT,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INTS | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
# Lot ids that do not exist (or are malformed): releasing a real lot twice hits the known bug of
# test_a_second_release_of_the_same_lot_is_409. sku_id + quantity still releases real lots.
LOT_IDS = st.lists(st.sampled_from(["NOPE", "L999999", "", "L 1"]) | TEXT, max_size=3)
BODIES = st.one_of(
    st.fixed_dictionaries({"amount": AMOUNTS}),
    st.fixed_dictionaries(
        {},
        optional={
            "lot_ids": LOT_IDS,
            "sku_id": st.sampled_from(["CU-CATH", "ST-COIL"]) | TEXT,
            "quantity": AMOUNTS,
        },
    ),
    st.dictionaries(TEXT, JSON_VALUES, max_size=3),
    JSON_VALUES,
)
KEYS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(["drawdowns", "repayments", "releases"]), body=BODIES, key=KEYS)
async def test_random_json_on_money_routes_is_never_a_500(api, route, body, key):
    r = await api.client.post(
        f"/v1/facilities/F1/{route}", json=body, headers={**api.auth("borrower"), "Idempotency-Key": key}
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith(PROBLEM)
