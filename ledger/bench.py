"""`pledge bench ledger`: movement throughput, revaluation time, growth ratio, peak memory.

Runs on PostgreSQL in a schema of its own (dropped at the end):
1. 1,000 facilities, 10 SKUs; 10,000 pledged lots; time `movements` movements at that size.
2. Grow the ledger to 1,000,000 lots; time the same number of movements again.
   growth_ratio = cost per movement at 1,000,000 lots / cost per movement at 10,000 lots.
3. One price change for SKU BENCH-0, held in 1/10 of the lots across every facility: revalue_s.
The movement mix: 80 % zone transfers, 20 % quarantine / clear adjustments (which change the
borrowing base), in batches, each batch one transaction through LedgerService.apply.
"""

from __future__ import annotations

import random
import resource
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rich.console import Console
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.core.lot import LotStatus, Movement, MovementKind
from ledger.core.price import PricePoint
from ledger.core.reference import Borrower, Facility, Site, Sku, SkuTerms, Zone
from ledger.service import LedgerService, LotRegistration
from ledger.store.engine import create_engine
from ledger.store.sql import PostgresStore
from migrations import migrate

SKUS = [f"BENCH-{i}" for i in range(10)]
D = Decimal


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _world(svc: LedgerService, facilities: int) -> list[str]:
    await svc.add(Site("BS1", "Bench site"))
    await svc.add(Zone("BZ-A", "BS1", "A"))
    await svc.add(Zone("BZ-B", "BS1", "B"))
    for sku in SKUS:
        await svc.add(Sku(sku, sku, "t", D(1000), D("0.01"), "EUR"))
    now = svc.clock()
    for sku in SKUS:
        for day in range(30, -1, -1):
            price = D(8000) + D(day * 7 % 13) * 10
            await svc.record_price(PricePoint(sku, now - timedelta(days=day), price, "EUR", "bench"))
    await svc.add(Borrower("BB", "Bench borrower", "B"))
    ids = [f"BF{i:05d}" for i in range(facilities)]
    terms = {s: SkuTerms(s, D("0.6"), D("0.5")) for s in SKUS}
    for fid in ids:
        await svc.create_facility(
            Facility(
                facility_id=fid,
                borrower_id="BB",
                currency="EUR",
                commitment=D(10**9),
                terms=terms,
                approved_sites=frozenset({"BS1"}),
                max_age_days=3650,
            )
        )
    return ids


async def _grow(svc: LedgerService, facilities: list[str], start: int, stop: int, batch: int) -> None:
    for lo in range(start, stop, batch):
        regs = [
            LotRegistration(
                f"BL{n:08d}",
                facilities[n % len(facilities)],
                f"E2{n:022X}",
                SKUS[n % len(SKUS)],
                D(25),
                "BS1",
                "BZ-A",
                pledge=True,
                received=True,
                verified=True,
            )
            for n in range(lo, min(stop, lo + batch))
        ]
        await svc.register_lots(regs)


async def _settle(engine: AsyncEngine) -> None:
    """VACUUM ANALYZE the hot tables, so that both phases are measured in steady state instead of
    racing autovacuum, which a bulk load of a million rows always wakes up."""

    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("lot", "journal_entry", "journal_head", "position", "facility_state", "pledge"):
            await conn.execute(text(f"VACUUM (ANALYZE) {table}"))


async def _movements(svc: LedgerService, lots: int, count: int, batch: int, rng: random.Random) -> float:
    """Apply `count` movements on random lots among the first `lots`; returns seconds."""
    quarantined: set[str] = set()
    spent = 0.0
    for _ in range(0, count, batch):
        picked = rng.sample(range(lots), batch)
        moves = []
        now = svc.clock()
        for n in picked:
            lot_id = f"BL{n:08d}"
            if rng.random() < 0.2:
                status = LotStatus.PLEDGED if lot_id in quarantined else LotStatus.QUARANTINED
                quarantined.symmetric_difference_update({lot_id})
                moves.append(Movement(MovementKind.ADJUSTMENT, lot_id, now, (f"bench:{n}",), status=status))
            else:
                zone = rng.choice(["BZ-A", "BZ-B"])
                moves.append(Movement(MovementKind.ZONE_TRANSFER, lot_id, now, (f"bench:{n}",), zone_id=zone))
        t0 = time.perf_counter()
        await svc.apply(moves)
        spent += time.perf_counter() - t0
    return spent


async def run_ledger_bench(
    url: str,
    movements: int,
    lots_small: int,
    lots_large: int,
    facilities: int,
    batch: int,
    console: Console,
) -> None:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, schema=schema)
    await migrate(engine)
    store = PostgresStore(engine)
    svc = LedgerService(store, lambda: datetime.now(UTC))
    rng = random.Random(42)
    try:
        t0 = time.perf_counter()
        ids = await _world(svc, facilities)
        await _grow(svc, ids, 0, lots_small, 5000)
        console.print(
            f"set-up: {facilities} facilities, {lots_small} lots in {time.perf_counter() - t0:.1f}s"
        )
        await _settle(engine)
        small_s = await _movements(svc, lots_small, movements, batch, rng)
        small_cost = small_s / movements
        console.print(
            f"{movements} movements at {lots_small} lots: {small_s:.2f}s ({movements / small_s:,.0f}/s)"
        )
        t0 = time.perf_counter()
        await _grow(svc, ids, lots_small, lots_large, 5000)
        console.print(f"grew to {lots_large} lots in {time.perf_counter() - t0:.1f}s")
        await _settle(engine)
        large_s = await _movements(svc, lots_large, movements, batch, rng)
        large_cost = large_s / movements
        console.print(
            f"{movements} movements at {lots_large} lots: {large_s:.2f}s ({movements / large_s:,.0f}/s)"
        )
        t0 = time.perf_counter()
        result = await svc.record_price(PricePoint(SKUS[0], svc.clock(), D("8123.45"), "EUR", "bench"))
        revalue_s = time.perf_counter() - t0
        console.print(
            f"revalued {SKUS[0]} ({lots_large // len(SKUS)} lots) across "
            f"{result.facilities} facilities in {revalue_s:.3f}s"
        )
        rate = movements / large_s
        console.print(
            f"ledger_movements_per_s={rate:.0f} revalue_s={revalue_s:.3f} "
            f"growth_ratio={large_cost / small_cost:.2f} peak_rss_mb={peak_rss_mb():.0f}"
        )
    finally:
        await store.close()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
