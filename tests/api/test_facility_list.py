"""Listing facilities: keyset pages of any size up to 1,000, every facility reachable, each
summary the one `GET /facilities/{id}` gives."""

from __future__ import annotations

from decimal import Decimal

from tests.ledger.world import facility

D = Decimal


async def _pages(api, who: str, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        params = {"limit": limit} | ({"after": after} if after else {})
        r = await api.client.get("/v1/facilities", params=params, headers=api.auth(who))
        assert r.status_code == 200, r.text
        doc = r.json()
        pages.append([f["facility_id"] for f in doc["items"]])
        after = doc["next_after"]
        if after is None:
            return pages


async def test_every_facility_is_reached_page_by_page(api):
    for n in range(3, 8):  # F3..F7 beside F1 and F2 (F0 has no credit line: not listed)
        await api.platform.credit.open_facility(facility(f"F{n}", commitment=D("100000"), reserves=D(0)), "A")
    everyone = [f"F{n}" for n in (1, 2, 3, 4, 5, 6, 7)]
    assert await _pages(api, "collateral_manager", 3) == [everyone[:3], everyone[3:6], everyone[6:]]
    assert await _pages(api, "collateral_manager", 7) == [everyone]  # a full last page ends the list
    assert await _pages(api, "borrower", 1) == [["F1"]]
    r = await api.client.get("/v1/facilities", params={"after": "F7"}, headers=api.auth("admin"))
    assert r.json() == {"items": [], "total": 7, "next_after": None}


async def test_a_listed_summary_is_the_facility_read_alone(api):
    h = {**api.auth("borrower"), "Idempotency-Key": "list-1"}
    r = await api.client.post("/v1/facilities/F1/drawdowns", json={"amount": "1234.56"}, headers=h)
    assert r.status_code == 201
    listed = (await api.client.get("/v1/facilities", headers=api.auth("admin"))).json()["items"]
    for item in listed:
        alone = await api.client.get(f"/v1/facilities/{item['facility_id']}", headers=api.auth("admin"))
        assert item == alone.json()
    assert [i["outstanding"] for i in listed] == ["1234.56", "0.00"]


async def test_a_page_size_outside_1_to_1000_is_a_validation_problem(api):
    for bad in ("0", "1001", "x"):
        r = await api.client.get("/v1/facilities", params={"limit": bad}, headers=api.auth("admin"))
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", bad
