"""A small, realistic warehouse world for ledger tests: two sites, copper and steel, one facility."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from ledger.core.price import PricePoint
from ledger.core.reference import Borrower, Facility, Site, Sku, SkuTerms, Zone
from ledger.service import LedgerService, LotRegistration

D = Decimal


def copper() -> Sku:
    return Sku("CU-CATH", "Copper cathode", "t", D("1000"), D("0.01"), "EUR")


def steel() -> Sku:
    return Sku("ST-COIL", "Steel coil", "t", D("1000"), D("0.02"), "EUR")


def facility(facility_id: str = "F1", **kw: object) -> Facility:
    args: dict = dict(
        facility_id=facility_id,
        borrower_id="B1",
        currency="EUR",
        commitment=D("5000000"),
        terms={
            "CU-CATH": SkuTerms("CU-CATH", D("0.65"), D("0.6")),
            "ST-COIL": SkuTerms("ST-COIL", D("0.50"), D("1")),
        },
        approved_sites=frozenset({"SH1"}),
        reserves=D("10000"),
        max_age_days=180,
    )
    args.update(kw)
    return Facility(**args)


async def build(svc: LedgerService, *facility_ids: str) -> None:
    await svc.add(Site("SH1", "Shanghai bonded warehouse 1"))
    await svc.add(Site("QD2", "Qingdao port yard 2"))
    await svc.add(Zone("SH1-A", "SH1", "Hall A"))
    await svc.add(Zone("SH1-B", "SH1", "Hall B"))
    await svc.add(Zone("QD2-Y", "QD2", "Yard"))
    await svc.add(copper())
    await svc.add(steel())
    await svc.add(Borrower("B1", "Acme Metals Trading", "B"))
    await svc.add(Borrower("B2", "Other Trading", "C"))
    for fid in facility_ids or ("F1",):
        await svc.create_facility(facility(fid))


async def price(svc: LedgerService, sku_id: str, value: str, days_ago: int = 0) -> None:
    now = svc.clock()
    await svc.record_price(PricePoint(sku_id, now - timedelta(days=days_ago), D(value), "EUR", "LME"))


def lot(
    n: int, facility_id: str = "F1", sku: str = "CU-CATH", qty: str = "25", **kw: object
) -> LotRegistration:
    args: dict = dict(
        lot_id=f"L{n:06d}",
        facility_id=facility_id,
        epc=f"E28011700000{n:012X}",
        sku_id=sku,
        quantity=D(qty),
        site_id="SH1",
        zone_id="SH1-A",
    )
    args.update(kw)
    return LotRegistration(**args)
