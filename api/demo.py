"""`pledge demo`: the platform on embedded defaults, showing what it does with real stored data.

Wave 1 (ledger): a borrower and facility, lots announced and pledged, received through the gate,
prices recorded; the ledger computes the borrowing base, availability and eligible/ineligible
breakdown from what it stored; then prices tick until --duration elapses, each tick a real
revaluation.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from ledger.core.borrowing_base import Certificate, availability
from ledger.core.lot import LotStatus, Movement, MovementKind
from ledger.core.price import PricePoint
from ledger.core.reference import Borrower, Facility, Site, Sku, SkuTerms, Zone
from ledger.service import LedgerService, LotRegistration

D = Decimal


def utcnow() -> datetime:
    return datetime.now(UTC)


async def seed(svc: LedgerService, run: str) -> str:
    """Create the demo world; returns the facility id. Ids carry `run` so reruns do not clash."""
    await svc.add(Site("SH1", "Shanghai bonded warehouse 1"))
    await svc.add(Site("QD2", "Qingdao port yard 2"))
    await svc.add(Zone("SH1-A", "SH1", "Hall A"))
    await svc.add(Zone("SH1-B", "SH1", "Hall B"))
    await svc.add(Zone("QD2-Y", "QD2", "Yard"))
    await svc.add(Sku("CU-CATH", "Copper cathode, LME grade A", "t", D("1000"), D("0.01"), "EUR"))
    await svc.add(Sku("AL-INGOT", "Aluminium ingot P1020", "t", D("1000"), D("0.01"), "EUR"))
    borrower = f"ACME-{run}"
    await svc.add(Borrower(borrower, "Acme Metals Trading Co.", "B"))
    facility_id = f"FAC-{run}"
    await svc.create_facility(
        Facility(
            facility_id=facility_id,
            borrower_id=borrower,
            currency="EUR",
            commitment=D("2000000"),
            terms={
                "CU-CATH": SkuTerms("CU-CATH", D("0.65"), D("0.70")),
                "AL-INGOT": SkuTerms("AL-INGOT", D("0.60"), D("0.70")),
            },
            approved_sites=frozenset({"SH1"}),
            reserves=D("25000"),
            max_age_days=180,
        )
    )
    return facility_id


async def price_history(svc: LedgerService, rng: random.Random) -> None:
    """A year of daily prices (random walk, ~1.3 %/day copper, ~1.1 %/day aluminium)."""
    now = svc.clock()
    for sku, start, vol in (("CU-CATH", 8200.0, 0.013), ("AL-INGOT", 2300.0, 0.011)):
        level = start
        for day in range(260, -1, -1):
            level *= 1 + rng.gauss(0, vol)
            await svc.record_price(
                PricePoint(sku, now - timedelta(days=day), D(f"{level:.2f}"), "EUR", "LME-demo")
            )


async def goods(svc: LedgerService, facility_id: str, run: str) -> None:
    regs = []
    for n in range(12):
        sku = "CU-CATH" if n < 8 else "AL-INGOT"
        regs.append(
            LotRegistration(
                f"{run}-L{n:02d}",
                facility_id,
                f"E280{run.upper()}{n:08X}",
                sku,
                D("25"),
                "SH1",
                "SH1-A",
                pledge=n != 9,
            )
        )
    regs.append(
        LotRegistration(
            f"{run}-L12",
            facility_id,
            f"E280{run.upper()}{12:08X}",
            "CU-CATH",
            D("20"),
            "QD2",
            "QD2-Y",
            pledge=True,
        )
    )
    await svc.register_lots(regs)
    now = svc.clock()
    moves = [
        Movement(
            MovementKind.RECEIPT,
            r.lot_id,
            now,
            (f"gate-SH1-1:{i}",),
            site_id=r.site_id,
            zone_id=r.zone_id,
            verified=i != 3,
        )
        for i, r in enumerate(regs)
        if i != 11  # lot 11 is still on its way
    ]
    await svc.apply(moves)
    await svc.apply(
        [
            Movement(
                MovementKind.ADJUSTMENT,
                f"{run}-L06",
                now,
                ("inspector:7",),
                status=LotStatus.QUARANTINED,
                reason="water damage",
            )
        ]
    )


def render(console: Console, cert: Certificate, commitment: Decimal, outstanding: Decimal) -> None:
    base = cert.base
    t = Table(title=f"Borrowing base of {cert.facility_id} at {cert.as_of:%Y-%m-%d %H:%M:%S}Z")
    for col in ("SKU", "eligible qty", "market value", "haircut", "advance", "lendable", "conc. excess"):
        t.add_column(col, justify="right")
    for line in base.lines:
        t.add_row(
            line.sku_id,
            f"{line.eligible_quantity}",
            f"{line.market_value:,.2f}",
            f"{line.haircut:.2%}",
            f"{line.advance_rate:.0%}",
            f"{line.counted:,.2f}",
            f"{line.concentration_excess:,.2f}",
        )
    console.print(t)
    r = Table(title="Ineligible lots by reason")
    r.add_column("lot")
    r.add_column("SKU")
    r.add_column("qty", justify="right")
    r.add_column("reason")
    for le in cert.lots:
        if le.reason is not None:
            r.add_row(le.lot.lot_id, le.lot.sku_id, str(le.lot.quantity), str(le.reason))
    console.print(r)
    avail = availability(commitment, base.borrowing_base, outstanding)
    console.print(
        f"market value of pledged goods EUR {base.market_value:,.2f} | reserves EUR {base.reserves:,.2f}"
        f" | [bold]borrowing base EUR {base.borrowing_base:,.2f}[/] | outstanding EUR {outstanding:,.2f}"
        f" | [bold green]availability EUR {avail:,.2f}[/]"
    )


async def run_demo(svc: LedgerService, duration_s: float, console: Console, seed_value: int = 7) -> None:
    rng = random.Random(seed_value)
    run = uuid.uuid4().hex[:6]
    console.rule("[bold]pledge demo: the collateral ledger")
    facility_id = await seed(svc, run)
    console.print(f"created borrower ACME-{run} and facility {facility_id} (commitment EUR 2,000,000)")
    await price_history(svc, rng)
    console.print("recorded 261 days of copper and aluminium prices (volatility haircuts from them)")
    await goods(svc, facility_id, run)
    console.print(
        "announced 13 lots, pledged 12, received 12 through the gate (one unverified, "
        "one quarantined, one outside the approved site, one unpledged)"
    )
    facility = await svc.facility(facility_id)
    render(console, await svc.certificate(facility_id), facility.commitment, D(0))
    broken = await svc.verify(facility_id)
    console.print(f"journal hash chain of {facility_id}: {'OK' if broken is None else broken}")
    deadline = time.monotonic() + duration_s
    level = {"CU-CATH": None, "AL-INGOT": None}
    while time.monotonic() < deadline:
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        for sku in level:
            last = (await svc.price_history(sku, limit=1))[-1].price
            new = (last * D(str(1 + rng.gauss(0, 0.01)))).quantize(D("0.01"))
            await svc.record_price(PricePoint(sku, svc.clock(), new, "EUR", "LME-demo"))
        bb = await svc.borrowing_base(facility_id)
        console.print(
            f"{svc.clock():%H:%M:%S} price tick -> borrowing base EUR {bb.borrowing_base:,.2f}, "
            f"availability EUR {availability(facility.commitment, bb.borrowing_base, D(0)):,.2f}"
        )
    console.rule("demo finished")
