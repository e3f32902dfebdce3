"""An SME draws, repays and releases over HTTP with its token; a manager answers questions."""

from __future__ import annotations

from decimal import Decimal

D = Decimal


async def test_sme_draws_repays_and_releases(api, clock):
    c, me = api.client, api.auth("borrower")
    f = (await c.get("/v1/facilities/F1", headers=me)).json()
    avail = D(f["availability"])
    assert avail > 0 and f["rate"]["total"] == "0.073"

    r = await c.post(
        "/v1/facilities/F1/drawdowns", json={"amount": "50000.00"}, headers={**me, "Idempotency-Key": "d-1"}
    )
    assert r.status_code == 201, r.text
    assert D(r.json()["facility"]["availability"]) == avail - D("50000.00")
    again = await c.post(
        "/v1/facilities/F1/drawdowns", json={"amount": "50000.00"}, headers={**me, "Idempotency-Key": "d-1"}
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == r.json()
    other = await c.post(
        "/v1/facilities/F1/drawdowns", json={"amount": "1.00"}, headers={**me, "Idempotency-Key": "d-1"}
    )
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency_key_reused")
    missing = await c.post("/v1/facilities/F1/drawdowns", json={"amount": "1.00"}, headers=me)
    assert missing.status_code == 400

    clock.advance(days=2)
    r = await c.post(
        "/v1/facilities/F1/repayments", json={"amount": "20.00"}, headers={**me, "Idempotency-Key": "r-1"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["facility"]["principal"] == "50000.00"  # 2 x 10.00 interest settled first

    r = await c.post(
        "/v1/facilities/F1/releases",
        json={"lot_ids": ["L000001"]},
        headers={**me, "Idempotency-Key": "rel-1"},
    )
    assert r.status_code == 201, r.text
    pos = (await c.get("/v1/facilities/F1/positions?lot_id=L000001", headers=me)).json()
    assert pos["items"][0]["status"] == "release_authorised"


async def test_borrower_cannot_see_another_facility(api):
    r = await api.client.get("/v1/facilities/F2", headers=api.auth("borrower"))
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_manager_reads_certificate_as_of_and_csv(api, clock):
    c, cm = api.client, api.auth("collateral_manager")
    before = clock()
    clock.advance(hours=1)
    cert = (await c.get("/v1/facilities/F1/certificate", headers=cm)).json()
    assert D(cert["borrowing_base"]) > 0
    past = (
        await c.get("/v1/facilities/F1/certificate", params={"as_of": before.isoformat()}, headers=cm)
    ).json()
    assert past["borrowing_base"] == cert["borrowing_base"]
    csv = await c.get("/v1/facilities/F1/certificate?format=csv", headers=cm)
    assert csv.headers["content-type"].startswith("text/csv") and "L000001" in csv.text
    audit = (await c.get("/v1/facilities/F1/audit", headers=cm)).json()
    assert audit["journal"]["ok"] and audit["balances"]["ok"]


async def test_float_amounts_and_garbage_are_problems_not_500s(api):
    c, me = api.client, {**api.auth("borrower"), "Idempotency-Key": "x"}
    for body in ({"amount": 0.1}, {"amount": "abc"}, {"amount": "-5"}, {}, {"amount": "1", "x": 1}):
        r = await c.post(
            "/v1/facilities/F1/drawdowns", json=body, headers={**me, "Idempotency-Key": str(body)}
        )
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await c.post("/v1/facilities/F1/drawdowns", content=b"{not json", headers=me)
    assert r.status_code == 422
