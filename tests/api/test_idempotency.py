"""Idempotency-Key on money-moving requests (IETF httpapi draft, Stripe's semantics).

missing key -> 400; same key + same body -> the stored response, replayed; same key + different
body -> 422; same key while the first request is still running -> 409 (PostgreSQL; on SQLite
the duplicate waits for the single writer and gets the replay). Errors are stored and
replayed like successes. Keys are scoped per token. What matters to the borrower is the money:
every test checks the statement, not only the status codes.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from api.idempotency import request_hash
from ledger.store.port import RequestKey
from ledger.store.tables import idempotency_record
from tests.ledger.world import price

D = Decimal
DRAW, REPAY, RELEASE = (f"/v1/facilities/F1/{x}" for x in ("drawdowns", "repayments", "releases"))
PROBLEM = "application/problem+json"
SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # decided before any SQL
POSTGRES_ONLY = pytest.mark.parametrize("store", ["postgresql"], indirect=True)
PERIOD = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}


async def postings(api, facility_id: str = "F1") -> list[tuple[str, str]]:
    """(kind, amount) of every statement line this month: what was really booked."""
    r = await api.client.get(
        f"/v1/facilities/{facility_id}/statement", params=PERIOD, headers=api.auth("collateral_manager")
    )
    assert r.status_code == 200, r.text
    return [(ln["kind"], ln["amount"]) for ln in r.json()["lines"]]


def keyed(api, key: str, who: str = "borrower") -> dict[str, str]:
    return {**api.auth(who), "Idempotency-Key": key}


@SQLITE_ONLY
async def test_a_money_request_without_a_key_is_400_and_books_nothing(api):
    for path, body in (
        (DRAW, {"amount": "100.00"}),
        (REPAY, {"amount": "1.00"}),
        (RELEASE, {"lot_ids": ["L000001"]}),
    ):
        for headers in (api.auth("borrower"), keyed(api, "")):
            r = await api.client.post(path, json=body, headers=headers)
            assert r.status_code == 400, (path, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
            assert r.json()["type"].endswith("/idempotency_key_missing")
    assert await postings(api) == []
    pos = (
        await api.client.get("/v1/facilities/F1/positions?lot_id=L000001", headers=api.auth("borrower"))
    ).json()
    assert pos["items"][0]["status"] == "pledged"


async def test_the_same_key_and_body_replay_the_stored_response_without_a_second_posting(api):
    c = api.client
    first = await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "draw-1"))
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # The facility moves on before the retry: a replay must return the ORIGINAL response.
    assert (await c.post(DRAW, json={"amount": "5.00"}, headers=keyed(api, "draw-2"))).status_code == 201

    again = await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "draw-1"))
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["facility"]["principal"] == "1000.00"  # stale on purpose: it is the stored answer
    assert await postings(api) == [("drawdown", "1000.00"), ("drawdown", "5.00")]
    now = (await c.get("/v1/facilities/F1", headers=api.auth("borrower"))).json()
    assert now["principal"] == "1005.00"


async def test_a_replayed_release_authorises_the_lots_once(api):
    c = api.client
    first = await c.post(RELEASE, json={"lot_ids": ["L000002"]}, headers=keyed(api, "rel-1"))
    assert first.status_code == 201, first.text
    again = await c.post(RELEASE, json={"lot_ids": ["L000002"]}, headers=keyed(api, "rel-1"))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["release_id"] == first.json()["release_id"]
    events = (await c.get("/v1/facilities/F1/events", headers=api.auth("borrower"))).json()["items"]
    assert [e["kind"] for e in events].count("release_approved") == 1


async def test_the_same_key_with_another_body_or_route_is_422_and_books_nothing(api):
    c = api.client
    assert (await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "k"))).status_code == 201
    for path, body in ((DRAW, {"amount": "2000.00"}), (REPAY, {"amount": "1000.00"})):
        r = await c.post(path, json=body, headers=keyed(api, "k"))
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["type"].endswith("/idempotency_key_reused")
    assert await postings(api) == [("drawdown", "1000.00")]


@POSTGRES_ONLY
async def test_the_same_key_while_the_first_request_is_in_flight_is_409(api):
    """Hold the key exactly as the first request's transaction does, then send the duplicate."""
    c, platform = api.client, api.platform
    principal = await platform.tokens.authenticate(api.tokens["borrower"])
    assert principal is not None
    first = RequestKey(principal.token_id, "slow-1", request_hash("POST", DRAW, {"amount": "1000.00"}))
    now = platform.clock()
    with pytest.raises(RuntimeError, match="the first request dies"):
        async with platform.store.money_transaction() as tx:
            opened = await tx.open("F1", now, first, now)
            assert opened.replay is None and opened.money is not None  # claimed, facility locked

            r = await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "slow-1"))
            assert r.status_code == 409, r.text
            assert r.headers["content-type"].startswith(PROBLEM)
            assert r.json()["type"].endswith("/idempotency_key_in_flight")
            # Under a key still held, even another body is 409: the first's request is not yet
            # visible to compare with (after it commits, another body gets 422).
            other = await c.post(DRAW, json={"amount": "7.00"}, headers=keyed(api, "slow-1"))
            assert other.status_code == 409
            assert await postings(api) == []
            raise RuntimeError("the first request dies before it commits")

    # Its claim died with its transaction: the retry goes through, once.
    retry = await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "slow-1"))
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    again = await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "slow-1"))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert (await c.post(DRAW, json={"amount": "7.00"}, headers=keyed(api, "slow-1"))).status_code == 422
    assert await postings(api) == [("drawdown", "1000.00")]


async def test_a_claim_committed_by_an_older_release_still_answers_409_until_cleared(api):
    """Before claims moved into the money transaction they were committed on their own; a crash
    could leave one behind. Such a row still holds its key (409), and a different body is 422."""
    c, platform = api.client, api.platform
    principal = await platform.tokens.authenticate(api.tokens["borrower"])
    assert principal is not None
    async with platform.store.transaction() as tx:
        await tx.raw_execute(
            idempotency_record.insert().values(
                scope=principal.token_id,
                key="left-1",
                request_hash=request_hash("POST", DRAW, {"amount": "1000.00"}),
                state="in_flight",
                created_at=platform.clock(),
            )
        )
    r = await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "left-1"))
    assert r.status_code == 409 and r.json()["type"].endswith("/idempotency_key_in_flight")
    other = await c.post(DRAW, json={"amount": "7.00"}, headers=keyed(api, "left-1"))
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency_key_reused")
    async with platform.store.transaction() as tx:
        await tx.raw_execute(idempotency_record.delete().where(idempotency_record.c.key == "left-1"))
    assert (await c.post(DRAW, json={"amount": "1000.00"}, headers=keyed(api, "left-1"))).status_code == 201
    assert await postings(api) == [("drawdown", "1000.00")]


async def test_an_error_response_is_stored_and_replayed_even_when_the_request_would_now_succeed(api):
    c = api.client
    refused = await c.post(REPAY, json={"amount": "500.00"}, headers=keyed(api, "pay-1"))
    assert refused.status_code == 422 and refused.json()["type"].endswith("/overpayment")
    assert refused.json()["owed"] == "0.00"
    too_big = await c.post(DRAW, json={"amount": "900000.00"}, headers=keyed(api, "big-1"))
    assert too_big.status_code == 409 and too_big.json()["type"].endswith("/insufficient_availability")

    # Now 500.00 is owed, so a fresh repayment of 500.00 would be accepted ...
    assert (await c.post(DRAW, json={"amount": "500.00"}, headers=keyed(api, "draw-1"))).status_code == 201
    # ... but the key's answer was given once and for all.
    for key, path, body, first in (
        ("pay-1", REPAY, {"amount": "500.00"}, refused),
        ("big-1", DRAW, {"amount": "900000.00"}, too_big),
    ):
        again = await c.post(path, json=body, headers=keyed(api, key))
        assert again.status_code == first.status_code
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["content-type"].startswith(PROBLEM)
        assert again.json() == first.json()
    assert await postings(api) == [("drawdown", "500.00")]


@SQLITE_ONLY
async def test_a_request_refused_by_validation_does_not_use_up_its_key(api):
    """Stripe: results are saved only once the endpoint started executing; a request that failed
    validation never claimed the key, so the corrected request may use it."""
    c = api.client
    bad = await c.post(DRAW, json={"amount": 0.1}, headers=keyed(api, "fix-me"))
    assert bad.status_code == 422 and bad.json()["type"].endswith("/validation_error")
    good = await c.post(DRAW, json={"amount": "0.10"}, headers=keyed(api, "fix-me"))
    assert good.status_code == 201 and "idempotent-replayed" not in good.headers
    assert await postings(api) == [("drawdown", "0.10")]


async def test_keys_are_scoped_per_token(api):
    """Two borrowers that happen to pick the same key do not see each other's responses."""
    c = api.client
    mine = await c.post(DRAW, json={"amount": "100.00"}, headers=keyed(api, "order-1"))
    theirs = await c.post(
        "/v1/facilities/F2/drawdowns",
        json={"amount": "100.00"},
        headers=keyed(api, "order-1", "other_borrower"),
    )
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["posting"]["facility_id"] == "F2"
    assert await postings(api, "F1") == [("drawdown", "100.00")]
    assert await postings(api, "F2") == [("drawdown", "100.00")]


@POSTGRES_ONLY
async def test_a_second_token_of_the_same_borrower_has_its_own_keys(api):
    c, platform = api.client, api.platform
    second = await platform.tokens.create("borrower", "F1", "acme-erp-2", platform.clock())
    first = await c.post(DRAW, json={"amount": "100.00"}, headers=keyed(api, "order-1"))
    assert first.status_code == 201
    r = await c.post(
        DRAW,
        json={"amount": "250.00"},
        headers={"Authorization": f"Bearer {second}", "Idempotency-Key": "order-1"},
    )
    assert r.status_code == 201, r.text
    assert await postings(api) == [("drawdown", "100.00"), ("drawdown", "250.00")]


async def test_a_fresh_answer_and_its_replay_are_the_same_bytes(api):
    """The answer is encoded once: the bytes stored with the money are the bytes sent, and the
    replay sends them again."""
    headers = api.auth("borrower") | {"Idempotency-Key": "same-bytes"}
    first = await api.client.post("/v1/facilities/F1/drawdowns", json={"amount": "10.00"}, headers=headers)
    again = await api.client.post("/v1/facilities/F1/drawdowns", json={"amount": "10.00"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert first.content == again.content
    assert first.headers["content-type"] == again.headers["content-type"] == "application/json"


async def test_a_key_forgotten_after_the_retention_never_books_twice(api, clock):
    """After PLEDGE_IDEMPOTENCY_RETENTION_S the stored answer is gone (the daily job); the same
    key and body again are a new request, which the posting's unique key refuses: a 409."""
    r = await api.client.post(DRAW, json={"amount": "100.00"}, headers=keyed(api, "monthly"))
    assert r.status_code == 201
    clock.advance(days=31)
    await price(api.platform.ledger, "CU-CATH", "8000")  # the goods stay eligible: not frozen
    assert await api.platform.credit.forget_request_keys(timedelta(days=30)) == 1
    again = await api.client.post(DRAW, json={"amount": "100.00"}, headers=keyed(api, "monthly"))
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM, again.text
    assert again.json()["type"].endswith("/idempotency_conflict")
    st = await api.client.get(
        "/v1/facilities/F1/statement",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
        headers=api.auth("collateral_manager"),
    )
    assert [ln["amount"] for ln in st.json()["lines"] if ln["kind"] == "drawdown"] == ["100.00"]
