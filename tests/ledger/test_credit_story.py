"""The credit facility told as stories on both stores: draw, repay, accrue, release, lines."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from ledger import credit as credit_module
from ledger.core.errors import (
    FacilityFrozen,
    InsufficientAvailability,
    InvalidReference,
    Overpayment,
    ReleaseRefused,
)
from ledger.core.lot import Movement, MovementKind
from ledger.core.price import PricePoint
from ledger.core.pricing import RatePlan
from ledger.core.statement import statement
from ledger.credit import CreditService
from ledger.service import LedgerService
from ledger.store import tables
from ledger.store.sql import SqlTx
from tests.ledger.world import build, facility, lot, price

D = Decimal
PLAN = RatePlan(D("0.03"), D("0.01"), {"A": D("0.01"), "B": D("0.02")}, D("0.013"))  # B: 7.30 %


async def world(store, clock):
    ledger = LedgerService(store, clock)
    credit = CreditService(ledger, clock, PLAN)
    await build(ledger, "F0")
    await credit.open_facility(facility("F1", commitment=D("1000000"), reserves=D(0)), "B")
    for day in range(30, -1, -1):
        await price(ledger, "CU-CATH", str(8000 + (day % 3) * 10), days_ago=day)
    await ledger.register_lots(
        [lot(n, pledge=True, received=True, verified=True, qty="10") for n in range(1, 5)]
    )
    return ledger, credit


async def test_draw_repay_and_interest_by_hand(store, clock):
    _ledger, credit = await world(store, clock)
    s = await credit.summary("F1")
    assert s.rate.total == D("0.073")
    assert s.availability > D("100000")
    await credit.draw("F1", D("100000.00"))
    clock.advance(days=3)
    s = await credit.summary("F1")
    assert s.accrued_interest == D("60.00")  # 100,000 x 7.30 % / 365 = 20.00 a day, 3 days
    r = await credit.repay("F1", D("1060.00"))  # interest first, then principal
    assert r.summary.principal == D("99000.00")
    assert r.summary.accrued_interest == D("0.00")
    with pytest.raises(Overpayment) as err:
        await credit.repay("F1", D("99000.01"))
    assert err.value.owed == D("99000.00")
    ok, stored, derived = await credit.check_balances("F1")
    assert ok, (stored, derived)


async def test_drawdown_above_availability_is_refused(store, clock):
    _ledger, credit = await world(store, clock)
    avail = (await credit.summary("F1")).availability
    with pytest.raises(InsufficientAvailability):
        await credit.draw("F1", avail + D("0.01"))
    await credit.draw("F1", avail)
    assert (await credit.summary("F1")).availability == 0


async def test_release_needs_cover_and_says_how_much_to_repay(store, clock):
    ledger, credit = await world(store, clock)
    avail = (await credit.summary("F1")).availability
    await credit.draw("F1", avail - D("1000"))
    with pytest.raises(ReleaseRefused) as err:
        await credit.release("F1", lot_ids=["L000001", "L000002"])
    assert err.value.repay_first > 0
    assert (await ledger.lot("L000001")).status == "pledged"  # nothing changed
    await credit.repay("F1", err.value.repay_first + D("1"))
    done = await credit.release("F1", lot_ids=["L000001", "L000002"])
    assert done.bb_after >= done.outstanding
    assert (await ledger.lot("L000001")).status == "release_authorised"
    kinds = [e["kind"] for e in await credit.events("F1")]
    assert "release_refused" in kinds and "release_approved" in kinds


async def test_removal_freezes_and_raises_a_margin_call(store, clock):
    ledger, credit = await world(store, clock)
    avail = (await credit.summary("F1")).availability
    await credit.draw("F1", avail)
    await ledger.apply([Movement(MovementKind.REMOVAL_WITHOUT_RELEASE, "L000003", clock(), ("gate:9",))])
    s = await credit.summary("F1")
    assert s.frozen and s.over_advance > 0
    with pytest.raises(FacilityFrozen):
        await credit.draw("F1", D("1"))
    events = await credit.events("F1")
    assert any(e["kind"] == "over_advance" and e["trigger"] == "movement" for e in events)
    clock.advance(days=1)
    await credit.repay("F1", s.over_advance + D("100"))
    assert not (await credit.summary("F1")).frozen
    _ = timedelta


async def test_a_statement_from_summed_history_is_the_one_from_every_posting(store, clock):
    """The service sums the lines before the period in the store (SQL on PostgreSQL) and reads
    only the period's postings; the pure statement over the whole history must agree, for
    periods before, across, between and after the postings, and at their exact instants."""
    _ledger, credit = await world(store, clock)
    t0 = clock()
    await credit.draw("F1", D("50000.00"))
    clock.advance(days=2)
    await credit.draw("F1", D("2500.50"))
    clock.advance(days=3, hours=5)
    await credit.repay("F1", D("10000.00"))  # books the accrued interest first
    clock.advance(days=1)
    await credit.repay("F1", D("333.33"))
    clock.advance(days=4)
    await credit.repay("F1", D("1.00"))
    async with credit.ledger.transaction() as tx:
        history = await tx.postings("F1")
    assert len(history) >= 6
    instants = sorted({p.at for p in history})
    edges = [t0 - timedelta(days=1), *instants, instants[-1] + timedelta(seconds=1)]
    edges.append(clock() + timedelta(days=9))
    periods = [(a, b) for a in edges for b in edges if a <= b]
    for start, end in periods:
        got = await credit.statement("F1", start, end)
        assert got == statement(history, "F1", start, end, "EUR"), (start, end)


async def test_the_audit_finds_a_posting_line_edited_behind_the_ledger(store, clock):
    _ledger, credit = await world(store, clock)
    await credit.draw("F1", D("5000.00"))
    await credit.repay("F1", D("1000.00"))
    ok, stored, derived = await credit.check_balances("F1")
    assert ok and derived == {"principal": D("4000.00"), "cash": D("-4000.00")}, derived
    async with credit.ledger.transaction() as tx:
        await tx.conn.execute(
            update(tables.posting_line)
            .where(tables.posting_line.c.facility_id == "F1", tables.posting_line.c.debit == D("5000.00"))
            .values(debit=D("5000.01"))
        )
    ok, stored, derived = await credit.check_balances("F1")
    assert not ok
    assert derived["principal"] == D("4000.01") and stored["principal"] == D("4000.00")


async def test_a_release_by_quantity_takes_the_oldest_lots_across_pages(store, clock, monkeypatch):
    monkeypatch.setattr(credit_module, "_LOT_PAGE", 2)  # 5 pledged lots: pages of 2, 2 and 1
    ledger, credit = await world(store, clock)  # L000001-L000004, 10 t each, received now
    clock.advance(hours=2)
    await ledger.register_lots([lot(0, pledge=True, received=True, verified=True, qty="10")])  # newest
    r = await credit.release("F1", sku_id="CU-CATH", quantity=D("35"))
    assert list(r.lot_ids) == ["L000001", "L000002", "L000003", "L000004"]  # first in, first out
    with pytest.raises(InvalidReference, match=r"only 10 of CU-CATH is pledged in stock; 10\.5 was asked"):
        await credit.release("F1", sku_id="CU-CATH", quantity=D("10.50"))


_PAUSE: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("pause", default=None)


async def waits_for_the_first(monkeypatch, read: str, first, second) -> bool:
    """Run `first` until it has made `read` (an SqlTx method) and hold it there, open, while
    `second` runs: whether `second` was still waiting half a second later. Then both finish."""
    real = getattr(SqlTx, read)

    async def read_then_pause(self, *args):
        got = await real(self, *args)
        pause = _PAUSE.get()
        if pause is not None:
            await pause.wait()
        return got

    monkeypatch.setattr(SqlTx, read, read_then_pause)
    pause = asyncio.Event()

    async def held() -> None:
        _PAUSE.set(pause)  # this task's context only
        await first()

    holding = asyncio.create_task(held())
    await asyncio.sleep(0.3)  # `first` has made its read and waits
    racing = asyncio.create_task(second())
    try:
        done, _ = await asyncio.wait([racing], timeout=0.5)
    finally:
        pause.set()  # whatever happens, `first` goes on and ends its transaction
        await asyncio.wait_for(asyncio.gather(holding, racing), 10)
    return not done


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)  # SQLite has one writer at a time
async def test_a_revaluation_and_a_drawdown_at_once_leave_the_line_state_right(store, clock, monkeypatch):
    """A revaluation re-checks the lines of the facilities it moved; a drawdown on one of them
    commits meanwhile. The re-check must not overwrite the drawdown's state with one computed
    from the balances before it (the revaluation's read is held open here, after it is made)."""
    ledger, credit = await world(store, clock)
    await credit.draw("F1", D("1000.00"))
    waited = await waits_for_the_first(
        monkeypatch,
        "balances",
        lambda: price(ledger, "CU-CATH", "8100"),
        lambda: credit.draw("F1", D("5000.00")),
    )
    assert waited, "the drawdown must wait for the re-check that holds F1's credit state"
    async with credit.ledger.transaction() as tx:
        state = (await tx.credit_states(["F1"]))["F1"]
        balances = (await tx.balances(["F1"]))["F1"]
    owed = balances.get("principal", D(0)) + balances.get("interest_receivable", D(0))
    assert state["last_outstanding"] == owed == D("6000.00")


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)  # SQLite has one writer at a time
async def test_two_prices_of_one_sku_at_once_leave_the_newest_in_the_market(store, clock, monkeypatch):
    """An older quote arriving late is held open after reading the SKU's history; the newest
    quote meanwhile must wait for it, then read it, and stay the market price."""
    ledger, _credit = await world(store, clock)
    now = clock()
    late = PricePoint("CU-CATH", now - timedelta(minutes=10), D("8050"), "EUR", "late")
    newest = PricePoint("CU-CATH", now, D("8200"), "EUR", "feed")
    waited = await waits_for_the_first(
        monkeypatch, "price_history", lambda: ledger.record_price(late), lambda: ledger.record_price(newest)
    )
    assert waited, "the second price of the SKU must wait for the first"
    async with ledger.transaction() as tx:
        market = (await tx.sku_markets(["CU-CATH"]))["CU-CATH"]
        prices = {r.price for r in await tx.positions(["F1"]) if r.sku_id == "CU-CATH"}
    assert (market.price, market.price_at, prices) == (D("8200"), now, {D("8200")})
