"""Group commit (`MoneyDesk`, `LedgerStore.money_batch`): requests of many facilities in one
transaction, on SQLite and PostgreSQL. Every batch rule checked against what is stored
afterwards: balances re-derived from the postings, stored answers, the order per facility."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import pytest

from ledger.core.errors import IdempotencyConflict, InsufficientAvailability, UnknownFacility
from ledger.credit import CreditService
from ledger.service import LedgerService
from ledger.store.port import MoneyAsk, Opened, RequestKeyInFlight, RequestKeyReused
from tests.ledger.test_credit_story import PLAN
from tests.ledger.test_money_desk import keyed
from tests.ledger.world import build, facility, lot, price

D = Decimal
FACILITIES = ("F1", "F2", "F3")
POSTGRES_ONLY = pytest.mark.parametrize("store", ["postgresql"], indirect=True)


async def world(store, clock, **desk):
    """Three facilities with goods, and a desk that runs ONE batch at a time (unless `desk`
    says otherwise), so that requests sent together queue behind the first and then leave
    together."""
    ledger = LedgerService(store, clock)
    credit = CreditService(ledger, clock, PLAN, **{"max_batches": 1, **desk})
    await build(ledger, "F0")
    for fid in FACILITIES:
        await credit.open_facility(facility(fid, commitment=D("1000000"), reserves=D(0)), "B")
    for day in range(30, -1, -1):
        await price(ledger, "CU-CATH", str(8000 + (day % 3) * 10), days_ago=day)
    await ledger.register_lots(
        [
            lot(n + 10 * i, facility_id=fid, pledge=True, received=True, verified=True, qty="10")
            for i, fid in enumerate(FACILITIES)
            for n in range(1, 4)
        ]
    )
    for fid in FACILITIES:  # cached: a request then reaches the desk without awaiting I/O, so
        await ledger.facility(fid)  # the ones sent together really queue together
    return ledger, credit


async def check_all(credit: CreditService) -> None:
    for fid in FACILITIES:
        ok, stored, derived = await credit.check_balances(fid)
        assert ok, (fid, stored, derived)


async def test_requests_sent_together_are_booked_in_few_batches(store, clock):
    _ledger, credit = await world(store, clock)
    answers = await asyncio.gather(
        *(credit.draw_keyed(fid, D("100.00"), keyed(f"k-{fid}-{n}")) for n in range(5) for fid in FACILITIES)
    )
    assert all(a.response.status_code == 201 and not a.replayed for a in answers)
    assert credit.desk.batched == 15
    assert credit.desk.batches < 15  # the first went alone, the rest queued and went together
    for fid in FACILITIES:
        assert (await credit.summary(fid)).principal == D("500.00")
    await check_all(credit)


async def test_a_facility_twice_in_a_batch_sees_the_state_the_first_left(store, clock):
    """Two drawdowns that each fit but not together, in one batch: the second is refused."""
    _ledger, credit = await world(store, clock)
    avail = (await credit.summary("F2")).availability
    half = (avail / 2 + D("1")).quantize(D("0.01"))
    first = asyncio.ensure_future(credit.draw_keyed("F1", D("1.00"), keyed("opener")))
    await asyncio.sleep(0)  # the opener runs alone; the next three queue and share a batch
    answers = await asyncio.gather(
        credit.draw_keyed("F2", half, keyed("a")),
        credit.draw_keyed("F2", half, keyed("b")),
        credit.repay_keyed("F2", D("5.00"), keyed("c")),
    )
    await first
    assert [a.response.status_code for a in answers] == [201, 409, 201]
    assert answers[1].response.body["code"] == InsufficientAvailability.code
    assert credit.desk.batches == 2
    s = await credit.summary("F2")
    assert s.principal == half - D("5.00")
    await check_all(credit)


async def test_refusals_replays_and_reused_keys_stay_per_request(store, clock):
    _ledger, credit = await world(store, clock)
    done = await credit.draw_keyed("F1", D("10.00"), keyed("done"))
    opener = asyncio.ensure_future(credit.draw_keyed("F3", D("1.00"), keyed("opener")))
    await asyncio.sleep(0)
    results = await asyncio.gather(
        credit.draw_keyed("F1", D("10.00"), keyed("done")),  # replay
        credit.draw_keyed("F1", D("10.00"), keyed("done", fingerprint="other")),  # reused
        credit.draw_keyed("F2", D("999999999.00"), keyed("too-much")),  # refused
        credit.draw_keyed("NOPE", D("1.00"), keyed("nope")),  # no such credit line... refused
        credit.draw_keyed("F3", D("20.00"), keyed("fine")),
        return_exceptions=True,
    )
    await opener
    replay, reused, refused, unknown, fine = results
    assert replay.replayed and replay.response == done.response  # type: ignore[union-attr]
    assert isinstance(reused, RequestKeyReused)
    assert refused.response.status_code == 409 and not refused.replayed  # type: ignore[union-attr]
    assert isinstance(unknown, UnknownFacility)  # the facility lookup refuses before the desk
    assert fine.response.status_code == 201  # type: ignore[union-attr]
    assert (await credit.summary("F1")).principal == D("10.00")
    assert (await credit.summary("F2")).principal == D("0.00")
    assert (await credit.summary("F3")).principal == D("21.00")
    again = await credit.draw_keyed("F2", D("999999999.00"), keyed("too-much"))
    assert again.replayed and again.response == refused.response  # type: ignore[union-attr]
    await check_all(credit)


async def test_the_same_key_twice_at_once_books_once(store, clock):
    _ledger, credit = await world(store, clock)
    answers = await asyncio.gather(*(credit.draw_keyed("F1", D("7.00"), keyed("same")) for _ in range(4)))
    assert sorted(a.replayed for a in answers) == [False, True, True, True]
    assert len({str(a.response.body) for a in answers}) == 1
    assert (await credit.summary("F1")).principal == D("7.00")


async def test_a_failing_batch_is_run_again_request_by_request(store, clock):
    """Two unkeyed drawdowns with one posting key in one batch: the booking statement fails,
    nothing of the batch stays; run again alone, each gets its own answer."""
    _ledger, credit = await world(store, clock)
    opener = asyncio.ensure_future(credit.draw("F3", D("1.00")))
    await asyncio.sleep(0)
    results = await asyncio.gather(
        credit.draw("F1", D("10.00"), idempotency_key="token-1:dup"),
        credit.draw("F2", D("20.00")),
        credit.draw("F1", D("30.00"), idempotency_key="token-1:dup"),
        return_exceptions=True,
    )
    await opener
    assert not isinstance(results[0], BaseException) and not isinstance(results[1], BaseException)
    assert isinstance(results[2], IdempotencyConflict)
    assert credit.desk.retried == 1
    assert (await credit.summary("F1")).principal == D("10.00")
    assert (await credit.summary("F2")).principal == D("20.00")
    await check_all(credit)


async def test_a_batch_of_many_orders_is_capped_and_the_rest_waits(store, clock):
    _ledger, credit = await world(store, clock, max_orders=4)
    answers = await asyncio.gather(
        *(credit.draw_keyed(FACILITIES[n % 3], D("1.00"), keyed(f"m{n}")) for n in range(20))
    )
    assert all(a.response.status_code == 201 for a in answers)
    assert credit.desk.batched == 20 and credit.desk.batches >= 5
    await check_all(credit)


async def test_a_busy_desk_starts_another_batch_only_for_enough_requests(store, clock):
    # Four batches may run at once, but while one runs another starts only with 64 requests
    # waiting: the first request goes alone, the 14 sent with it wait for it and leave together.
    _ledger, credit = await world(store, clock, max_batches=4, min_orders_busy=64)
    answers = await asyncio.gather(
        *(credit.draw_keyed(fid, D("10.00"), keyed(f"b-{fid}-{n}")) for n in range(5) for fid in FACILITIES)
    )
    assert all(a.response.status_code == 201 for a in answers)
    assert (credit.desk.batches, credit.desk.batched) == (2, 15)
    await check_all(credit)


async def test_without_a_minimum_a_free_slot_takes_the_next_request_at_once(store, clock):
    _ledger, credit = await world(store, clock, max_batches=4)  # min_orders_busy 1: the default
    answers = await asyncio.gather(
        *(credit.draw_keyed(fid, D("10.00"), keyed(f"c-{fid}-{n}")) for n in range(5) for fid in FACILITIES)
    )
    assert all(a.response.status_code == 201 for a in answers)
    assert credit.desk.batched == 15 and credit.desk.batches >= 3  # one per free slot, then the rest
    await check_all(credit)


async def test_the_desk_refuses_a_minimum_below_one(store, clock):
    with pytest.raises(ValueError, match="min_orders_busy"):
        await world(store, clock, min_orders_busy=0)


async def test_the_store_batch_reads_each_facility_once(store, clock):
    _ledger, _credit = await world(store, clock)
    now = clock()
    asks = [MoneyAsk("F1", now, None), MoneyAsk("F2", now, None), MoneyAsk("F1", now, None)]
    async with store.money_batch() as tx:
        opened = await tx.open(asks, now)
    assert [type(o).__name__ for o in opened] == ["Opened"] * 3
    assert opened[0].money is opened[2].money  # type: ignore[union-attr]
    assert opened[1].money.state["facility_id"] == "F2"  # type: ignore[union-attr]


async def test_the_batch_reads_what_the_slow_path_reads(store, clock):
    _ledger, credit = await world(store, clock)
    await credit.draw("F1", D("1000.00"))
    now = clock()
    aged = now + timedelta(days=1)  # every lot received before it: all three are read
    async with store.money_batch() as tx:
        (opened,) = await tx.open([MoneyAsk("F1", aged, None)], now)
    assert isinstance(opened, Opened) and opened.replay is None and opened.money is not None
    async with store.transaction() as tx:
        state = await tx.lock_credit_state("F1")
        balances = (await tx.balances(["F1"]))["F1"]
        positions = await tx.positions(["F1"])
        lots = await tx.aged_lots({"F1": aged})
    assert opened.money.state == state
    assert opened.money.balances == balances and balances["principal"] == D("1000.00")
    assert opened.money.positions == positions
    assert sorted(lot.lot_id for lot in opened.money.aged_lots) == sorted(lot.lot_id for lot in lots)
    assert len(lots) == 3
    # the same digits too, not only equal values ("1000.00" is shown as such, not as "1E+3")
    assert repr(opened.money.balances) == repr(balances)
    assert repr(opened.money.positions) == repr(positions)
    assert sorted(map(repr, opened.money.aged_lots)) == sorted(map(repr, lots))
    assert repr(opened.money.state) == repr(state)


@POSTGRES_ONLY
async def test_a_key_held_elsewhere_is_in_flight_for_that_request_only(store, clock):
    _ledger, _credit = await world(store, clock)
    now = clock()
    held = keyed("held")
    async with store.money_transaction() as other:
        await other.open("F3", now, held.key, now)
        async with store.money_batch() as tx:
            opened = await tx.open(
                [MoneyAsk("F1", now, held.key), MoneyAsk("F2", now, keyed("free").key)], now
            )
        assert isinstance(opened[0], RequestKeyInFlight)
        assert opened[1].money is not None  # type: ignore[union-attr]


@POSTGRES_ONLY
async def test_two_desks_racing_on_the_same_facilities_never_over_lend(store, clock):
    """Two desks (two API processes) batching the same facilities in different orders:
    facility-ordered locks mean no deadlock, re-reads after a lock wait mean no over-lending."""
    ledger, credit = await world(store, clock)
    other = CreditService(ledger, clock, PLAN, max_batches=2)
    avail = {fid: (await credit.summary(fid)).availability for fid in FACILITIES}
    amount = {fid: (avail[fid] / 10).quantize(D("0.01"), rounding=ROUND_DOWN) for fid in FACILITIES}
    calls = [
        (credit if n % 2 else other).draw_keyed(fid, amount[fid], keyed(f"r{n}-{fid}"))
        for n in range(30)
        for fid in (FACILITIES if n % 2 else FACILITIES[::-1])
    ]
    answers = await asyncio.gather(*calls)
    for fid in FACILITIES:
        assert (await credit.summary(fid)).principal == 10 * amount[fid]
    accepted = sum(1 for a in answers if a.response.status_code == 201)
    assert accepted == 30  # ten fit per facility, the rest are refused
    await check_all(credit)


async def test_a_request_cancelled_while_it_waits_is_dropped_and_the_rest_go_on(store, clock):
    _ledger, credit = await world(store, clock)
    opener = asyncio.ensure_future(credit.draw_keyed("F1", D("1.00"), keyed("opener")))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(credit.draw_keyed("F2", D("50.00"), keyed("gone")))
    kept = asyncio.ensure_future(credit.draw_keyed("F3", D("60.00"), keyed("kept")))
    await asyncio.sleep(0)
    gone.cancel()  # its caller went away while it waited behind the opener's batch
    await opener
    assert (await kept).response.status_code == 201
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert (await credit.summary("F2")).principal == D("0.00")
    assert (await credit.summary("F3")).principal == D("60.00")
    again = await credit.draw_keyed("F2", D("50.00"), keyed("gone"))  # the key was never used
    assert again.response.status_code == 201 and not again.replayed
