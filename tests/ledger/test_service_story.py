"""The ledger told as stories, run on every store adapter (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.core.eligibility import Reason
from ledger.core.errors import DoublePledge, DuplicateEpc, UnknownFacility, UnknownSku
from ledger.core.lot import LotStatus, Movement, MovementKind
from ledger.service import LedgerService
from tests.ledger.world import build, lot, price

D = Decimal


async def test_receiving_pledged_lots_raises_the_borrowing_base(store, clock):
    svc = LedgerService(store, clock)
    await build(svc)
    await price(svc, "CU-CATH", "8000")
    await svc.register_lots([lot(1, pledge=True), lot(2, pledge=True)])
    assert (await svc.borrowing_base("F1")).borrowing_base == 0  # expected goods do not count

    await svc.apply(
        [
            Movement(MovementKind.RECEIPT, "L000001", clock(), ("gate-1:1",), zone_id="SH1-A", verified=True),
            Movement(MovementKind.RECEIPT, "L000002", clock(), ("gate-1:2",), zone_id="SH1-A", verified=True),
        ]
    )
    bb = await svc.borrowing_base("F1")
    cert = await svc.certificate("F1")
    assert bb.borrowing_base == cert.base.borrowing_base
    assert bb.borrowing_base > 0
    assert (await svc.lot("L000001")).status == LotStatus.PLEDGED
    assert cert.ineligible_by_reason() == {}


async def test_double_pledge_is_refused_and_recorded(store, clock):
    svc = LedgerService(store, clock)
    await build(svc, "F1", "F2")
    await svc.register_lots([lot(7, pledge=True)])
    with pytest.raises(DoublePledge) as err:
        await svc.register_lots([lot(8, facility_id="F2", epc=lot(7).epc, pledge=True)])
    assert err.value.pledged_to == "F1"
    refusals = await svc.pledge_refusals(lot(7).epc)
    assert [r["requested_by"] for r in refusals] == ["F2"]
    with pytest.raises(DuplicateEpc):
        await svc.register_lots([lot(9, epc=lot(7).epc)])


async def test_bad_references_write_nothing(store, clock):
    svc = LedgerService(store, clock)
    await build(svc)
    with pytest.raises(UnknownFacility):
        await svc.register_lots([lot(1, facility_id="NOPE")])
    with pytest.raises(UnknownSku):
        await svc.register_lots([lot(2, sku="NOPE")])
    assert await svc.positions(facility_id="F1") == []


async def test_unverified_and_unpledged_lots_carry_their_reason(store, clock):
    svc = LedgerService(store, clock)
    await build(svc)
    await price(svc, "CU-CATH", "8000")
    await svc.register_lots(
        [
            lot(1, pledge=True, received=True, verified=False),
            lot(2, pledge=False, received=True, verified=True),
            lot(3, pledge=True, received=True, verified=True, site_id="QD2", zone_id="QD2-Y"),
        ]
    )
    cert = await svc.certificate("F1")
    reasons = {le.lot.lot_id: le.reason for le in cert.lots}
    assert reasons == {
        "L000001": Reason.UNVERIFIED,
        "L000002": Reason.NOT_PLEDGED,
        "L000003": Reason.OUTSIDE_APPROVED_SITE,
    }
    assert (await svc.borrowing_base("F1")).borrowing_base == 0


async def test_edited_journal_row_breaks_verification(store, clock):
    from sqlalchemy import update

    from ledger.store import tables as t

    svc = LedgerService(store, clock)
    await build(svc)
    await svc.register_lots([lot(1, pledge=True), lot(2, pledge=True)])
    assert await svc.verify("F1") is None
    async with store.transaction() as tx:
        await tx.raw_execute(
            update(t.journal_entry).where(t.journal_entry.c.seq == 2).values(quantity=D("250"))
        )
    broken = await svc.verify("F1")
    assert broken is not None and broken.seq == 2
