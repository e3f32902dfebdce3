"""Who may do what: every route of the app x every kind of caller, one expected status per cell.

The routes are enumerated from the app itself, so a route added without a row here fails
`test_every_route_has_a_row`; a row left behind for a route that is gone fails it too.

Callers: anonymous (no token), the borrower on its own facility (F1), a borrower on someone
else's facility (the F2 token asking about F1: 404, never 403, so it cannot learn which ids
exist), a collateral manager and an admin. The rules (issue 4, api/principal.py):
- borrowers read their own facility and act on it (draw, repay, release) and nothing else;
- collateral managers read everything and write prices, reference data and lots, but never
  move money;
- admins do everything a collateral manager does, and open facilities; money actions stay
  the borrower's own (an admin cannot draw on a borrower's behalf).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from api.main import create_app

D = Decimal
ANON, OWN, OTHER, CM, ADMIN = "anonymous", "borrower", "other_borrower", "collateral_manager", "admin"
CALLERS = (ANON, OWN, OTHER, CM, ADMIN)


def cells(anon: int, own: int, other: int, cm: int, admin: int) -> dict[str, int]:
    return dict(zip(CALLERS, (anon, own, other, cm, admin), strict=True))


PUBLIC = cells(200, 200, 200, 200, 200)
ANY_READ = cells(401, 200, 200, 200, 200)  # any authenticated caller, no facility in the path
STAFF_READ = cells(401, 403, 403, 200, 200)
FACILITY_READ = cells(401, 200, 404, 200, 200)
MONEY = cells(401, 201, 404, 403, 403)
STAFF_WRITE = cells(401, 403, 403, 201, 201)
STAFF_FACILITY_WRITE = cells(401, 403, 404, 201, 201)
ADMIN_WRITE = cells(401, 403, 403, 403, 201)


@dataclass(frozen=True)
class Call:
    """One request; `path` has {facility_id} already filled in."""

    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    expect: dict[str, int]
    call: Callable[[int, Any], Call]  # (fresh number, clock) -> the request


def fixed(path: str, **params: Any) -> Callable[[int, Any], Call]:
    return lambda _n, _clock: Call(path, params)


def money(path: str, body: Callable[[int], dict[str, Any]]) -> Callable[[int, Any], Call]:
    return lambda n, _clock: Call(path, json=body(n), headers={"Idempotency-Key": f"matrix-{n}"})


def new_facility(n: int, _clock: Any) -> Call:
    body = {
        "facility_id": f"FX{n}",
        "borrower_id": "B1",
        "currency": "EUR",
        "commitment": "100000.00",
        "terms": {"CU-CATH": {"advance_rate": "0.5"}},
        "approved_sites": ["SH1"],
    }
    return Call("/v1/facilities", json=body)


def new_lots(n: int, _clock: Any) -> Call:
    lot = {
        "lot_id": f"LM{n:05d}",
        "epc": f"E2801170000000AB{n:08X}",
        "sku_id": "CU-CATH",
        "quantity": "5",
        "site_id": "SH1",
        "zone_id": "SH1-A",
    }
    return Call("/v1/facilities/F1/lots", json={"lots": [lot]})


def new_price(n: int, clock: Any) -> Call:
    at = (clock() - timedelta(minutes=n)).isoformat()  # a price cannot come from the future
    return Call("/v1/prices", json={"sku_id": "ST-COIL", "price": "600.00", "currency": "EUR", "at": at})


F = "/v1/facilities/{facility_id}"
F1 = "/v1/facilities/F1"
ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/openapi.json"): Row(PUBLIC, fixed("/openapi.json")),
    ("GET", "/docs"): Row(PUBLIC, fixed("/docs")),
    ("GET", "/docs/oauth2-redirect"): Row(PUBLIC, fixed("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Row(PUBLIC, fixed("/redoc")),
    ("GET", "/v1/health"): Row(PUBLIC, fixed("/v1/health")),
    ("POST", "/v1/facilities"): Row(ADMIN_WRITE, new_facility),
    ("GET", "/v1/facilities"): Row(ANY_READ, fixed("/v1/facilities")),
    ("GET", F): Row(FACILITY_READ, fixed("/v1/facilities/F1")),
    ("POST", F + "/drawdowns"): Row(MONEY, money(F1 + "/drawdowns", lambda n: {"amount": "10.00"})),
    ("POST", F + "/repayments"): Row(MONEY, money(F1 + "/repayments", lambda n: {"amount": "10.00"})),
    ("POST", F + "/releases"): Row(MONEY, money(F1 + "/releases", lambda n: {"lot_ids": ["L000004"]})),
    ("GET", F + "/statement"): Row(
        FACILITY_READ,
        fixed("/v1/facilities/F1/statement", start="2026-01-01T00:00:00Z", end="2026-02-01T00:00:00Z"),
    ),
    ("GET", F + "/events"): Row(FACILITY_READ, fixed("/v1/facilities/F1/events")),
    ("GET", F + "/positions"): Row(FACILITY_READ, fixed("/v1/facilities/F1/positions")),
    ("GET", F + "/movements"): Row(FACILITY_READ, fixed("/v1/facilities/F1/movements")),
    ("GET", F + "/certificate"): Row(FACILITY_READ, fixed("/v1/facilities/F1/certificate", format="csv")),
    ("GET", F + "/audit"): Row(FACILITY_READ, fixed("/v1/facilities/F1/audit")),
    ("GET", F + "/feed"): Row(FACILITY_READ, fixed("/v1/facilities/F1/feed", max_events=1)),
    ("POST", F + "/lots"): Row(STAFF_FACILITY_WRITE, new_lots),
    ("POST", "/v1/prices"): Row(STAFF_WRITE, new_price),
    ("GET", "/v1/prices/{sku_id}"): Row(ANY_READ, fixed("/v1/prices/CU-CATH")),
    ("POST", "/v1/sites"): Row(
        STAFF_WRITE, lambda n, _c: Call("/v1/sites", json={"site_id": f"S{n}", "name": "yard"})
    ),
    ("POST", "/v1/zones"): Row(
        STAFF_WRITE,
        lambda n, _c: Call("/v1/zones", json={"zone_id": f"Z{n}", "site_id": "SH1", "name": "hall"}),
    ),
    ("POST", "/v1/skus"): Row(
        STAFF_WRITE,
        lambda n, _c: Call(
            "/v1/skus",
            json={"sku_id": f"K{n}", "name": "zinc", "uom": "t", "unit_mass_kg": "1000", "currency": "EUR"},
        ),
    ),
    ("POST", "/v1/borrowers"): Row(
        STAFF_WRITE, lambda n, _c: Call("/v1/borrowers", json={"borrower_id": f"B{n}x", "name": "Zed Ltd"})
    ),
    ("GET", "/v1/skus"): Row(ANY_READ, fixed("/v1/skus")),
    ("GET", "/v1/sites"): Row(STAFF_READ, fixed("/v1/sites")),
}


def new_device(n: int, _clock: Any) -> Call:
    body = {
        "device_id": f"DEV-{n}",
        "site_id": "SH1",
        "zone_id": "SH1-A",
        "kind": "rfid_zone",
        "format": "impinj",
    }
    return Call("/v1/devices", json=body)


# Routes of the gateway side (api/routes/devices.py, deadletters.py, metrics.py).
# /metrics is public by design (counters only, no business data: its
# module docstring), an exception to "anonymous is 401" besides health and the docs.
GATEWAY_ROWS: dict[tuple[str, str], Row] = {
    ("POST", "/v1/devices"): Row(STAFF_WRITE, new_device),
    ("GET", "/v1/devices"): Row(STAFF_READ, fixed("/v1/devices")),
    ("GET", "/v1/devices/{device_id}"): Row(STAFF_READ, fixed("/v1/devices/DEV-0")),
    ("GET", "/v1/deadletters"): Row(STAFF_READ, fixed("/v1/deadletters")),
    ("GET", "/metrics"): Row(PUBLIC, fixed("/metrics")),
}
ROWS |= GATEWAY_ROWS


# Cells that answer wrongly for a reason that is not authorisation: (status seen, why). Strict, like
# xfail(strict=True): a cell that starts answering as expected fails the matrix until removed here.
KNOWN_BUGS: dict[tuple[str, str, str], tuple[int, str]] = {}
PROBLEM = "application/problem+json"
SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the matrix runs on both


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every endpoint, HEAD left out (Starlette adds it to GET)."""
    try:  # FastAPI >= 0.16x keeps included routers lazy; this walks them
        from fastapi.routing import iter_route_contexts

        routes = [(rc.original_route, rc.path) for rc in iter_route_contexts(app.routes)]
    except ImportError:  # older FastAPI: app.routes is already flat
        routes = [(r, r.path) for r in app.routes]
    found = set()
    for route, path in routes:
        methods = getattr(route, "methods", None) or {"GET"}  # a Mount (e.g. /metrics) has none
        found |= {(m, path) for m in methods if m != "HEAD"}
    return found


@SQLITE_ONLY
def test_every_route_has_a_row(api):
    routes = app_routes(create_app(api.platform))
    assert ("GET", "/v1/health") in routes and ("POST", F + "/drawdowns") in routes  # the walk works
    assert routes - ROWS.keys() == set(), "routes without an authorisation row: add them to ROWS"
    assert ROWS.keys() - routes == set(), "rows for routes that no longer exist"


async def test_authorisation_matrix(api, clock):
    served = app_routes(create_app(api.platform))
    # Something to repay, so the borrower's repayment cell can succeed; a device to read.
    await api.platform.credit.draw("F1", D("1000.00"))
    if ("POST", "/v1/devices") in served:
        r = await api.client.post("/v1/devices", json=new_device(0, clock).json, headers=api.auth(ADMIN))
        assert r.status_code == 201, r.text
    headers = {who: api.auth(who) for who in CALLERS if who != ANON} | {ANON: {}}
    wrong: list[str] = []
    n = 0
    for (method, template), row in ROWS.items():
        if (method, template) not in served:  # an optional row whose route is not served yet
            continue
        for who in CALLERS:
            n += 1
            call = row.call(n, clock)
            hdrs = {**headers[who], **call.headers}
            r = await api.client.request(method, call.path, params=call.params, json=call.json, headers=hdrs)
            want, cell = row.expect[who], f"{method} {template} as {who}"
            bug = KNOWN_BUGS.get((method, template, who))
            if bug is not None and r.status_code == want:
                wrong.append(f"{cell}: now {want}, fixed? remove it from KNOWN_BUGS ({bug[1]})")
            elif r.status_code != (want if bug is None else bug[0]):
                wrong.append(f"{cell}: {r.status_code} (want {want}) {r.text[:160]}")
            elif r.status_code >= 400 and not r.headers["content-type"].startswith(PROBLEM):
                wrong.append(f"{cell}: {r.status_code} is not problem+json")
    assert wrong == [], "\n".join(wrong)


@SQLITE_ONLY
async def test_a_foreign_facility_looks_exactly_like_a_missing_one(api):
    """The 404 a borrower gets for F2 is the 404 it gets for an id that was never issued."""
    me = api.auth("borrower")
    for (method, template), row in ROWS.items():
        if "{facility_id}" not in template:
            continue
        params = row.call(0, lambda: None).params if method == "GET" else None
        answers = []
        for fid in ("F2", "NO-SUCH-FACILITY"):
            path = template.replace("{facility_id}", fid)
            r = await api.client.request(
                method, path, params=params, json={}, headers={**me, "Idempotency-Key": "probe"}
            )
            problem = r.json()
            answers.append((r.status_code, problem["type"], problem["title"], set(problem)))
        assert answers[0] == answers[1] and answers[0][0] == 404, (method, template, answers)


@SQLITE_ONLY
async def test_a_borrower_lists_only_its_own_facility(api):
    mine = (await api.client.get("/v1/facilities", headers=api.auth("borrower"))).json()
    assert [f["facility_id"] for f in mine["items"]] == ["F1"] and mine["total"] == 1


@SQLITE_ONLY
async def test_staff_list_survives_a_facility_without_credit_terms(api):
    """F0 exists in the collateral ledger only (no credit state); the list must still answer."""
    r = await api.client.get("/v1/facilities", headers=api.auth("collateral_manager"))
    assert r.status_code == 200, r.text
    assert {"F1", "F2"} <= {f["facility_id"] for f in r.json()["items"]}


@SQLITE_ONLY
async def test_an_unknown_or_malformed_token_is_401(api):
    c = api.client
    bad = ("Bearer plg_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer " + "x" * 600, "plg_x")
    for value in bad:
        r = await c.get("/v1/facilities/F1", headers={"Authorization": value})
        assert r.status_code == 401, (value[:20], r.status_code)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"].startswith("application/problem+json")
