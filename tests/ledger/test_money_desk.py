"""The money transaction (`LedgerStore.money_transaction`, SQLAlchemy on SQLite and PostgreSQL)
and the credit rules through the money desk (raw asyncpg batches on PostgreSQL). Claim, lock and
read, book or answer a refusal; every rule checked against what is really stored afterwards, not
only against what the calls return. Batches themselves: test_money_batch.py."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from ledger.core.errors import IdempotencyConflict, InsufficientAvailability
from ledger.core.posting import drawdown_posting
from ledger.credit import KeyedRequest
from ledger.store.port import (
    MONEY_STATE_COLUMNS,
    MoneyWrites,
    RequestKey,
    RequestKeyInFlight,
    RequestKeyReused,
    StoredResponse,
)
from tests.ledger.test_credit_story import world

D = Decimal
POSTGRES_ONLY = pytest.mark.parametrize("store", ["postgresql"], indirect=True)


def keyed(key: str, fingerprint: str = "fp-1") -> KeyedRequest:
    return KeyedRequest(
        RequestKey("token-1", key, fingerprint),
        answer=lambda r: StoredResponse(
            201, {"posting": r.posting.posting_id, "amount": str(r.posting.amount)}
        ),
        refuse=lambda e: StoredResponse(409, {"code": e.code}),
    )


async def test_open_reads_what_the_slow_path_reads(store, clock):
    _ledger, credit = await world(store, clock)
    await credit.draw("F1", D("1000.00"))
    now = clock()
    async with store.money_transaction() as tx:
        opened = await tx.open("F1", now - timedelta(days=90), None, now)
    assert opened.replay is None and opened.money is not None
    async with store.transaction() as tx:
        state = await tx.lock_credit_state("F1")
        balances = (await tx.balances(["F1"]))["F1"]
        positions = await tx.positions(["F1"])
        aged = await tx.aged_lots({"F1": now - timedelta(days=90)})
    assert opened.money.state == state
    assert opened.money.balances == balances and balances["principal"] == D("1000.00")
    assert opened.money.positions == positions
    assert sorted(lot.lot_id for lot in opened.money.aged_lots) == sorted(lot.lot_id for lot in aged)


async def test_an_unknown_facility_opens_to_nothing(store, clock):
    await world(store, clock)
    now = clock()
    async with store.money_transaction() as tx:
        opened = await tx.open("NOPE", now, None, now)
    assert opened.replay is None and opened.money is None


async def test_a_keyed_drawdown_books_once_and_replays_its_stored_answer(store, clock):
    _ledger, credit = await world(store, clock)
    first = await credit.draw_keyed("F1", D("500.00"), keyed("k1"))
    assert first.response.status_code == 201 and not first.replayed
    again = await credit.draw_keyed("F1", D("500.00"), keyed("k1"))
    assert again.replayed and again.response == first.response
    with pytest.raises(RequestKeyReused):
        await credit.draw_keyed("F1", D("500.00"), keyed("k1", fingerprint="another body"))
    s = await credit.summary("F1")
    assert s.principal == D("500.00")
    ok, stored, derived = await credit.check_balances("F1")
    assert ok, (stored, derived)


async def test_a_refusal_is_stored_and_replayed_and_books_nothing(store, clock):
    _ledger, credit = await world(store, clock)
    avail = (await credit.summary("F1")).availability
    refused = await credit.draw_keyed("F1", avail + D("1"), keyed("too-much"))
    assert refused.response == StoredResponse(409, {"code": "insufficient_availability"})
    await credit.draw("F1", D("1.00"))  # the state moves on ...
    again = await credit.draw_keyed("F1", avail + D("1"), keyed("too-much"))
    assert again.replayed and again.response == refused.response  # ... the answer does not
    assert (await credit.summary("F1")).principal == D("1.00")
    with pytest.raises(InsufficientAvailability):  # without a key, a refusal is raised
        await credit.draw("F1", avail + D("1"))


async def test_interest_accrued_on_the_way_is_booked_with_the_money(store, clock):
    _ledger, credit = await world(store, clock)
    await credit.draw("F1", D("100000.00"))
    clock.advance(days=2)
    r = await credit.repay_keyed("F1", D("40.00"), keyed("pay"))  # 2 days x 20.00 of interest
    assert r.response.status_code == 201
    s = await credit.summary("F1")
    assert s.principal == D("100000.00") and s.accrued_interest == D("0.00")
    statement = await credit.statement("F1", clock() - timedelta(days=3), clock() + timedelta(days=1))
    assert [ln.kind for ln in statement.lines] == [
        "drawdown",
        "interest_accrual",
        "interest_accrual",
        "repayment",
    ]
    ok, stored, derived = await credit.check_balances("F1")
    assert ok, (stored, derived)


async def test_a_posting_key_booked_twice_is_an_idempotency_conflict(store, clock):
    _ledger, credit = await world(store, clock)
    await credit.draw("F1", D("10.00"), idempotency_key="token-1:k")
    now = clock()
    async with store.money_transaction() as tx:
        opened = await tx.open("F1", now, None, now)
        assert opened.money is not None
        st = opened.money.state
        posting = drawdown_posting(
            "P-dup", "F1", now, D("10.00"), "EUR", memo="dup", idempotency_key="token-1:k"
        )
        writes = MoneyWrites(
            "F1",
            [posting],
            st["posting_seq"] + 1,
            {"principal": D("20.00"), "cash": D("-20.00")},
            {c: st[c] for c in MONEY_STATE_COLUMNS},
            [],
        )
        with pytest.raises(IdempotencyConflict):
            await tx.book(writes, None, None)
    assert (await credit.summary("F1")).principal == D("10.00")


@POSTGRES_ONLY
async def test_a_key_held_by_an_open_transaction_is_in_flight_and_free_after_its_rollback(store, clock):
    _ledger, credit = await world(store, clock)
    now = clock()
    request = keyed("held")
    with pytest.raises(RuntimeError):
        async with store.money_transaction() as tx:
            await tx.open("F1", now, request.key, now)
            with pytest.raises(RequestKeyInFlight):
                await credit.draw_keyed("F1", D("5.00"), request)
            raise RuntimeError("the first request dies")
    answer = await credit.draw_keyed("F1", D("5.00"), request)
    assert answer.response.status_code == 201 and not answer.replayed


@POSTGRES_ONLY
async def test_a_second_transaction_waits_for_the_facility_and_reads_after_the_lock(store, clock):
    """Balances must be read after the lock: two drawdowns that each fit but not together."""
    import asyncio

    _ledger, credit = await world(store, clock)
    avail = (await credit.summary("F1")).availability
    half = (avail / 2 + D("1")).quantize(D("0.01"))
    answers = await asyncio.gather(
        credit.draw_keyed("F1", half, keyed("a")), credit.draw_keyed("F1", half, keyed("b"))
    )
    assert sorted(a.response.status_code for a in answers) == [201, 409]
    assert (await credit.summary("F1")).principal == half
