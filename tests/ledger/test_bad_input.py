"""Bad input, on every store: each is a typed error with a clear message, and nothing is written."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from ledger.core.errors import (
    CurrencyMismatch,
    DoublePledge,
    DuplicateEpc,
    DuplicateId,
    InvalidAmount,
    InvalidTransition,
    LedgerError,
    UnknownBorrower,
    UnknownFacility,
    UnknownLot,
    UnknownSite,
    UnknownSku,
    UnknownZone,
)
from ledger.core.lot import Movement, MovementKind
from ledger.core.price import PricePoint
from ledger.core.reference import Site, Sku, SkuTerms, Zone
from ledger.service import LedgerService
from ledger.store import tables as t
from ledger.store.port import MovementFilter
from tests.ledger.world import build, facility, lot, price

D = Decimal
K = MovementKind


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    rows: dict[str, list[tuple[Any, ...]]]


async def snapshot(store) -> Snapshot:
    """Row counts of every table, and the rows of those a failed request could update in place."""
    async with store.transaction() as tx:
        counts = {name: await tx.count(name) for name in sorted(t.metadata.tables)}
        rows = {}
        for table in (t.lot, t.journal_head, t.position, t.facility_state, t.pledge, t.sku_market):
            result = await tx.raw_execute(select(table).order_by(*table.primary_key.columns))
            rows[table.name] = [tuple(r) for r in result]
    return Snapshot(counts, rows)


@pytest.fixture
async def svc(store, clock) -> LedgerService:
    service = LedgerService(store, clock)
    await build(service, "F1", "F2")
    await price(service, "CU-CATH", "8000")
    await service.register_lots([lot(1, pledge=True, received=True, verified=True)])
    clock.advance(minutes=5)
    return service


async def refused(svc: LedgerService, error: type[LedgerError], call, *, match: str) -> LedgerError:
    """Run `call`, expect `error` with `match` in its message, and check nothing was written."""
    before = await snapshot(svc.store)
    with pytest.raises(error, match=match) as caught:
        await call()
    assert await snapshot(svc.store) == before
    return caught.value


# Cases are looped inside a few tests rather than parametrized: each PostgreSQL test pays for its
# own schema, and since a refusal writes nothing, one world can take every refusal in turn.

# --- quantities ----------------------------------------------------------------------------------

BAD_QUANTITIES = [D("0"), D("-25"), D("-0.001"), D("NaN"), D("Infinity"), 25.0, 25]


async def test_lots_of_zero_negative_or_non_decimal_quantity_are_refused(svc):
    for qty in BAD_QUANTITIES:
        err = await refused(
            svc, InvalidAmount, lambda q=qty: svc.register_lots([lot(2, qty="1"), lot(3, quantity=q)]),
            match=r"quantity must be a finite Decimal greater than zero \(got ",
        )
        assert err.field == "quantity" and err.code == "invalid_amount"


async def test_adjustments_to_zero_or_a_negative_quantity_are_refused(svc, clock):
    for qty in BAD_QUANTITIES:
        move = Movement(K.ADJUSTMENT, "L000001", clock(), ("scale-1:9",), quantity=qty)
        await refused(svc, InvalidAmount, lambda m=move: svc.apply([m]), match="quantity must be")
    assert (await svc.lot("L000001")).quantity == D("25")


# --- unknown references --------------------------------------------------------------------------

async def test_an_unknown_sku_is_refused_wherever_it_appears(svc, clock):
    financing_it = facility("F3", terms={"AL-INGOT": SkuTerms("AL-INGOT", D("0.6"))})
    for call in (
        lambda: svc.register_lots([lot(2, sku="AL-INGOT")]),
        lambda: svc.record_price(PricePoint("AL-INGOT", clock(), D("2300"), "EUR", "LME")),
        lambda: svc.create_facility(financing_it),
    ):
        await refused(svc, UnknownSku, call, match="unknown SKU 'AL-INGOT'")


async def test_unknown_sites_and_zones_are_refused(svc, clock):
    cases = [
        (lambda: svc.register_lots([lot(2, site_id="XX9", zone_id=None)]), UnknownSite, "site 'XX9'"),
        (lambda: svc.register_lots([lot(2, zone_id="SH1-Z")]), UnknownZone, "zone 'SH1-Z'"),
        (lambda: svc.register_lots([lot(2, zone_id="QD2-Y")]), UnknownZone, "zone 'QD2-Y'"),  # other site
        (lambda: svc.apply([Movement(K.ZONE_TRANSFER, "L000001", clock(), zone_id="SH1-Z")]),
         UnknownZone, "zone 'SH1-Z'"),
        (lambda: svc.apply([Movement(K.ZONE_TRANSFER, "L000001", clock(), site_id="XX9", zone_id="SH1-B")]),
         UnknownSite, "site 'XX9'"),
        (lambda: svc.apply([Movement(K.ZONE_TRANSFER, "L000001", clock(), site_id="QD2", zone_id="SH1-B")]),
         UnknownZone, "zone 'SH1-B'"),
        (lambda: svc.add(Zone("XX9-A", "XX9", "Hall A")), UnknownSite, "site 'XX9'"),
        (lambda: svc.create_facility(facility("F3", approved_sites=frozenset({"XX9"}))),
         UnknownSite, "site 'XX9'"),
    ]
    for call, error, what in cases:
        await refused(svc, error, call, match=f"unknown {what}")


async def test_unknown_facilities_and_borrowers_are_refused(svc, clock):
    await refused(svc, UnknownBorrower, lambda: svc.create_facility(facility("F3", borrower_id="B9")),
                  match="unknown borrower 'B9'")
    for call in (
        lambda: svc.register_lots([lot(2, facility_id="F9")]),
        lambda: svc.borrowing_base("F9"),
        lambda: svc.certificate("F9"),
        lambda: svc.certificate("F9", as_of=clock()),
        lambda: svc.verify("F9"),
        lambda: svc.facility("F9"),
        lambda: svc.movements(MovementFilter("F9")),
        lambda: svc.positions(facility_id="F9", as_of=clock()),
    ):
        await refused(svc, UnknownFacility, call, match="unknown facility 'F9'")


async def test_a_batch_with_one_bad_movement_is_refused_whole(svc, clock):
    transfer = Movement(K.ZONE_TRANSFER, "L000001", clock(), zone_id="SH1-B")
    await refused(svc, UnknownLot, lambda: svc.apply([transfer, replace(transfer, lot_id="L999999")]),
                  match="unknown lot 'L999999'")
    never_authorised = Movement(K.AUTHORISED_RELEASE, "L000001", clock())
    await refused(svc, InvalidTransition, lambda: svc.apply([transfer, never_authorised]),
                  match="lot L000001 in status pledged cannot take a authorised_release")
    assert (await svc.lot("L000001")).zone_id == "SH1-A"


async def test_a_pledge_to_an_unknown_facility_is_refused_as_such(svc):
    await svc.register_lots([lot(2, received=True)])
    await refused(svc, UnknownFacility, lambda: svc.pledge("F9", ["L000002"]), match="unknown facility 'F9'")


async def test_a_zone_transfer_never_leaves_a_lot_in_a_zone_of_another_site(svc, clock):
    move = Movement(K.ZONE_TRANSFER, "L000001", clock(), ("reader-QD2:1",), zone_id="QD2-Y")
    try:
        await svc.apply([move])
    except LedgerError:
        return  # refusing it is fine too
    moved = await svc.lot("L000001")
    assert (moved.site_id, moved.zone_id) == ("QD2", "QD2-Y")


# --- duplicates and double pledges -----------------------------------------------------------------

async def test_a_registered_epc_cannot_be_registered_again(svc):
    err = await refused(svc, DuplicateEpc, lambda: svc.register_lots([lot(2, epc=lot(1).epc)]),
                        match=f"EPC {lot(1).epc} is already registered to lot L000001")
    assert err.existing_lot == "L000001"
    await refused(svc, DuplicateEpc, lambda: svc.register_lots([lot(2), lot(3, epc=lot(2).epc)]),
                  match=f"EPC {lot(2).epc} is already registered")  # twice in one request
    assert await svc.verify("F1") is None


async def test_a_registered_lot_id_cannot_be_registered_again(svc):
    await refused(svc, DuplicateId, lambda: svc.register_lots([lot(2, lot_id="L000001")]),
                  match="lot 'L000001' already exists")


async def test_pledging_goods_already_pledged_to_another_facility_is_refused_and_recorded(svc, clock):
    before = await snapshot(svc.store)
    with pytest.raises(DoublePledge) as err:
        await svc.register_lots([lot(2, facility_id="F2", epc=lot(1).epc, pledge=True)])
    assert (err.value.pledged_to, err.value.requested_by, err.value.lot_id) == ("F1", "F2", "L000001")
    assert str(err.value) == (
        f"lot L000001 (EPC {lot(1).epc}) is already pledged to facility F1; "
        "facility F2 cannot take a second pledge over the same goods"
    )
    after = await snapshot(svc.store)
    # the refusal itself is evidence and is kept; nothing else is written
    assert after.counts == {**before.counts, "pledge_refusal": before.counts["pledge_refusal"] + 1}
    assert after.rows == before.rows
    (refusal,) = await svc.pledge_refusals(lot(1).epc)
    assert (refusal["requested_by"], refusal["pledged_to"], refusal["at"]) == ("F2", "F1", clock())


async def test_a_pledged_lot_or_a_taken_id_is_refused(svc):
    await refused(svc, InvalidTransition, lambda: svc.pledge("F1", ["L000001"]),
                  match="lot L000001 in status pledged cannot take a pledge")
    await refused(svc, DuplicateId, lambda: svc.add(Site("SH1", "Somewhere else")), match="site 'SH1'")
    await refused(svc, DuplicateId, lambda: svc.create_facility(facility("F1", reserves=D("0"))),
                  match="facility 'F1'")


# --- prices and currencies -----------------------------------------------------------------------

async def test_a_price_of_zero_or_below_is_refused_before_it_reaches_the_store(svc, clock):
    before = await snapshot(svc.store)
    for value in (D("0"), D("-8000"), D("NaN"), D("-Infinity"), 8000.0):
        with pytest.raises(InvalidAmount, match="price must be a Decimal greater than zero") as err:
            await svc.record_price(PricePoint("CU-CATH", clock(), value, "EUR", "LME"))
        assert err.value.field == "price"
    assert await snapshot(svc.store) == before


async def test_a_currency_mismatch_is_refused(svc, clock):
    usd_price = PricePoint("CU-CATH", clock(), D("8700"), "USD", "COMEX")
    err = await refused(svc, CurrencyMismatch, lambda: svc.record_price(usd_price),
                        match="currency mismatch in price of SKU CU-CATH: expected EUR, got USD")
    assert (err.expected, err.got) == ("EUR", "USD")
    assert [x.price for x in await svc.price_history("CU-CATH")] == [D("8000")]
    await refused(svc, CurrencyMismatch, lambda: svc.create_facility(facility("F3", currency="USD")),
                  match="expected USD, got EUR")
    await svc.add(Sku("AL-INGOT", "Aluminium ingot", "t", D("1000"), D("0.01"), "USD"))
    financing_usd = facility("F3", terms={"AL-INGOT": SkuTerms("AL-INGOT", D("0.6"))})
    await refused(svc, CurrencyMismatch, lambda: svc.create_facility(financing_usd),
                  match="SKU AL-INGOT of facility F3")
