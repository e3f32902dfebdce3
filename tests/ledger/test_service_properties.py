"""Properties of the ledger service, driven by random warehouse histories on SQLite (hypothesis).

Each example starts from its own copy of one built world (two facilities, a price history) and
plays a random sequence of registrations, pledges, receipts, zone transfers, adjustments, release
authorisations, releases, removals, prices and clock advances (refused requests included), then
checks that:

1. the incremental borrowing base equals the full recomputation of the certificate;
2. replaying the journal reproduces the lot table (and the pledge registry matches the lots);
3. every facility's hash chain verifies;
4. a certificate as of a past time equals the one that was computed live at that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update

from ledger.core.borrowing_base import Certificate
from ledger.core.errors import LedgerError
from ledger.core.haircut import HaircutPolicy
from ledger.core.journal import JournalEntry, replay
from ledger.core.lot import LotStatus, Movement, MovementKind
from ledger.core.price import PricePoint
from ledger.core.reference import Borrower, Site, Zone
from ledger.service import LedgerService, LotRegistration
from ledger.store import tables as t
from ledger.store.engine import create_engine
from ledger.store.port import MovementFilter
from ledger.store.sql import SqliteStore
from tests.conftest import FakeClock, make_sqlite_store
from tests.ledger.world import copper, facility, lot, steel

D = Decimal
K = MovementKind
S = LotStatus
FACILITIES = ("F1", "F2")
SKUS = ("CU-CATH", "ST-COIL")
PLACES = (("SH1", "SH1-A"), ("SH1", "SH1-B"), ("QD2", "QD2-Y"))
START = FakeClock().now
# A short window so that a few random prices give a volatility (not only the cap).
POLICY = HaircutPolicy(window=10, min_returns=3)


async def world(svc: LedgerService) -> None:
    for obj in (Site("SH1", "Shanghai 1"), Site("QD2", "Qingdao 2"), Zone("SH1-A", "SH1", "Hall A"),
                Zone("SH1-B", "SH1", "Hall B"), Zone("QD2-Y", "QD2", "Yard"), copper(), steel(),
                Borrower("B1", "Acme", "B")):
        await svc.add(obj)
    for days_ago, cu, st_ in ((4, "8000", "600"), (3, "8100", "590"), (2, "7950", "610"), (1, "8050", "605")):
        at = svc.clock() - timedelta(days=days_ago)
        await svc.record_price(PricePoint("CU-CATH", at, D(cu), "EUR", "LME"))
        await svc.record_price(PricePoint("ST-COIL", at, D(st_), "EUR", "SHFE"))
    # F1: copper capped at 60 %, ages after 10 days; F2: both sites, ages after 5 days, no reserves
    await svc.create_facility(facility("F1", max_age_days=10))
    await svc.create_facility(
        facility("F2", max_age_days=5, reserves=D("0"), approved_sites=frozenset({"SH1", "QD2"}))
    )


# --- the random history -------------------------------------------------------------------------

lots_ = st.integers(0, 30)  # an index into the lots registered so far
places = st.sampled_from(PLACES)
quantities = st.decimals(D("0.5"), D("40"), places=1)

registrations = st.tuples(st.just("register"), st.sampled_from(FACILITIES), st.sampled_from(SKUS), quantities,
                          st.booleans(), st.booleans(), st.booleans(), places)
ops = st.one_of(
    registrations,
    st.tuples(st.just("reuse_epc"), lots_, st.sampled_from(FACILITIES)),  # duplicate EPC / double pledge
    st.tuples(st.just("pledge"), lots_),
    st.tuples(st.just("receipt"), lots_, places, st.booleans()),
    st.tuples(st.just("transfer"), lots_, places),
    st.tuples(st.just("adjust"), lots_, st.none() | quantities,
              st.none() | st.sampled_from([S.QUARANTINED, S.MISSING, S.IN_STOCK, S.PLEDGED]),
              st.none() | st.booleans()),
    st.tuples(st.just("authorise"), lots_),
    st.tuples(st.just("release"), lots_),
    st.tuples(st.just("remove"), lots_),
    st.tuples(st.just("price"), st.sampled_from(SKUS), st.integers(-300, 300)),
    st.tuples(st.just("advance"), st.sampled_from([1, 6, 30, 80, 200])),  # hours
)


@dataclass
class Run:
    svc: LedgerService
    clock: FakeClock
    lots: list[LotRegistration] = field(default_factory=list)
    live: list[tuple[datetime, str, Certificate]] = field(default_factory=list)
    last_price: dict[str, int] = field(default_factory=lambda: {"CU-CATH": 8050, "ST-COIL": 605})

    def pick(self, i: int) -> LotRegistration | None:
        return self.lots[i % len(self.lots)] if self.lots else None

    async def move(self, i: int, kind: MovementKind, **kw: Any) -> None:
        reg = self.pick(i)
        if reg is not None:
            at = self.clock()
            await self.svc.apply([Movement(kind, reg.lot_id, at, (f"dev:{at:%H%M}",), **kw)])

    async def step(self, op: tuple[Any, ...]) -> None:
        name, *args = op
        if name == "register":
            fid, sku, qty, pledge, received, verified, (site, zone) = args
            reg = lot(len(self.lots) + 1, facility_id=fid, sku=sku, quantity=qty, pledge=pledge,
                      received=received, verified=verified, site_id=site, zone_id=zone)
            await self.svc.register_lots([reg])
            self.lots.append(reg)
        elif name == "reuse_epc" and self.lots:
            i, fid = args
            n = 900 + len(self.lots)
            await self.svc.register_lots([lot(n, facility_id=fid, epc=self.pick(i).epc, pledge=True)])
        elif name == "pledge" and self.lots:
            reg = self.pick(args[0])
            await self.svc.pledge(reg.facility_id, [reg.lot_id])
        elif name == "receipt":
            i, (site, zone), verified = args
            await self.move(i, K.RECEIPT, site_id=site, zone_id=zone, verified=verified)
        elif name == "transfer":
            i, (site, zone) = args
            await self.move(i, K.ZONE_TRANSFER, site_id=site, zone_id=zone)
        elif name == "adjust":
            i, qty, status, verified = args
            await self.move(i, K.ADJUSTMENT, quantity=qty, status=status, verified=verified)
        elif name == "authorise":
            await self.move(args[0], K.RELEASE_AUTHORISATION)
        elif name == "release":
            await self.move(args[0], K.AUTHORISED_RELEASE)
        elif name == "remove":
            await self.move(args[0], K.REMOVAL_WITHOUT_RELEASE)
        elif name == "price":
            sku, delta = args
            self.last_price[sku] = max(1, self.last_price[sku] + delta)
            point = PricePoint(sku, self.clock(), D(self.last_price[sku]), "EUR", "feed")
            await self.svc.record_price(point)
        elif name == "advance":
            # what the certificate says now, to compare later with the certificate as of now
            for fid in FACILITIES:
                self.live.append((self.clock(), fid, await self.svc.certificate(fid)))
            self.clock.advance(hours=args[0])


# --- the checks ---------------------------------------------------------------------------------

async def check(run: Run) -> None:
    svc = run.svc
    for fid in FACILITIES:
        # 1. incremental == full recomputation
        incremental = await svc.borrowing_base(fid)
        full = (await svc.certificate(fid)).base
        assert incremental.borrowing_base == full.borrowing_base, fid
        assert incremental.market_value == full.market_value, fid
        assert incremental.lines == full.lines, fid
        assert incremental == full
        # 2. the journal replays to the lot table; the pledge registry agrees with the lots
        async with svc.store.transaction() as tx:
            replayed = replay([e async for e in tx.entries(fid)])
            table = {x.lot_id: x for x in await tx.lots_of_facility(fid)}
            registry = await tx.pledges_by_epc([x.epc for x in table.values()])
        assert replayed == table, fid
        assert registry == {x.epc: fid for x in table.values() if x.pledged}, fid
        # 3. the chain verifies
        assert await svc.verify(fid) is None
    # 4. point in time
    for at, fid, live in run.live:
        assert await svc.certificate(fid, as_of=at) == live, (fid, at)


@contextlib.asynccontextmanager
async def copy_of(template: Path) -> AsyncIterator[tuple[LedgerService, FakeClock]]:
    """A service on a private copy of the template world (building it is the slow part)."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in template.parent.glob(template.name + "*"):  # the database and any WAL file
            shutil.copy(f, Path(tmp) / f.name)
        store = SqliteStore(create_engine(f"sqlite+aiosqlite:///{Path(tmp) / template.name}"))
        try:
            clock = FakeClock(START)
            yield LedgerService(store, clock, POLICY), clock
        finally:
            await store.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger-world") / "ledger.db"

    async def build() -> None:
        store = await make_sqlite_store(path)
        try:
            await world(LedgerService(store, FakeClock(START), POLICY))
        finally:
            await store.close()

    asyncio.run(build())
    return path


async def play(template: Path, ops_: list[tuple[Any, ...]]) -> None:
    async with copy_of(template) as (svc, clock):
        run = Run(svc, clock)
        for op in ops_:
            # refused requests are part of the story: they must leave no trace
            with contextlib.suppress(LedgerError):
                await run.step(op)
        run.clock.advance(hours=1)
        await check(run)


# a few lots first, so that most movements find a lot to act on
histories = st.tuples(st.lists(registrations, min_size=2, max_size=6), st.lists(ops, min_size=5, max_size=30))


@settings(max_examples=25, deadline=None)
@given(history=histories)
def test_random_warehouse_histories_keep_every_ledger_invariant(template, history):
    first, then = history
    asyncio.run(play(template, first + then))


def test_a_known_history_keeps_every_invariant(template):
    """A fixed story through every kind of step (and a refused one): the properties' smoke test."""
    story = [
        ("register", "F1", "CU-CATH", D("25"), True, False, True, PLACES[0]),
        ("register", "F1", "ST-COIL", D("12.5"), False, True, True, PLACES[1]),
        ("register", "F2", "CU-CATH", D("30"), True, True, True, PLACES[2]),
        ("receipt", 0, PLACES[1], True),
        ("pledge", 1),
        ("advance", 6),
        ("price", "CU-CATH", 120),
        ("reuse_epc", 0, "F2"),  # double pledge: refused
        ("transfer", 2, PLACES[0]),
        ("adjust", 1, D("12"), S.QUARANTINED, None),
        ("advance", 30),
        ("authorise", 0),
        ("release", 0),
        ("remove", 2),
        ("advance", 200),  # F2's lots age, prices go stale
        ("adjust", 1, None, S.PLEDGED, True),
        ("price", "ST-COIL", -5),
    ]
    asyncio.run(play(template, story))


def forged_values(e: JournalEntry) -> dict[str, Any]:
    """For every stored column the hash covers, a value other than the one stored."""
    lot = e.lot
    return {
        "at": e.at + timedelta(microseconds=1),
        "kind": "adjustment",
        "lot_id": "L999999",
        "epc": "FORGED",
        "sku_id": "ST-COIL" if lot.sku_id != "ST-COIL" else "CU-CATH",
        "quantity": lot.quantity + D("0.001"),
        "site_id": "QD2" if lot.site_id != "QD2" else "SH1",
        "zone_id": None if lot.zone_id else "SH1-B",
        "status": "quarantined",
        "pledged": not lot.pledged,
        "verified": not lot.verified,
        "received_at": None if lot.received_at else e.at,
        "evidence": [*e.evidence, "forged:1"],
        "reason": (e.reason or "") + "forged",
        "prev_hash": "1" * 64,
        "hash": "2" * 64,
    }


async def test_editing_any_stored_column_of_an_entry_breaks_verification(template):
    # every column but the key; a new column without a forged value here fails with KeyError
    columns = [c.name for c in t.journal_entry.columns if c.name not in ("facility_id", "seq")]
    je = t.journal_entry
    for column in columns:
        async with copy_of(template) as (svc, _):
            await svc.register_lots([lot(1, pledge=True, received=True, verified=True), lot(2)])
            (second,) = await svc.movements(MovementFilter("F1", after_seq=1, limit=1))
            forged = {column: forged_values(second)[column]}
            async with svc.store.transaction() as tx:
                await tx.raw_execute(update(je).where(je.c.facility_id == "F1", je.c.seq == 2).values(forged))
            broken = await svc.verify("F1")
            assert broken is not None and broken.seq == 2, column


async def test_a_price_stamped_slightly_ahead_of_the_clock_is_valued_the_same_both_ways(template):
    async with copy_of(template) as (svc, clock):
        await svc.register_lots([lot(1, pledge=True, received=True, verified=True)])
        clock.advance(days=5)  # the seeded prices are stale by now
        skewed = PricePoint("CU-CATH", clock() + timedelta(seconds=2), D("8000"), "EUR", "LME")
        try:
            await svc.record_price(skewed)
        except LedgerError:
            return  # refusing a price from the future is fine too
        assert await svc.borrowing_base("F1") == (await svc.certificate("F1")).base


async def test_deleting_the_newest_journal_entry_breaks_verification(template):
    async with copy_of(template) as (svc, _):
        await svc.register_lots([lot(1, pledge=True, received=True, verified=True), lot(2, pledge=True)])
        async with svc.store.transaction() as tx:
            ((seq, _),) = (await tx.lock_heads(["F1"])).values()
            await tx.raw_execute(delete(t.journal_entry).where(t.journal_entry.c.seq == seq))
        assert await svc.verify("F1") is not None
