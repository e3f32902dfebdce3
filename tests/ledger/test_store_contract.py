"""The storage port's contract: one suite, run on every adapter (SQLite and PostgreSQL) via `store`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger.core.errors import Conflict, DuplicateEpc, DuplicateId
from ledger.core.journal import GENESIS, JournalEntry, make_entry, replay, verify_chain
from ledger.core.lot import Lot, LotStatus, MovementKind
from ledger.core.price import PricePoint
from ledger.core.reference import Borrower, Site, Sku, Zone
from ledger.store.port import FacilityStateRow, LotFilter, MovementFilter, PositionRow, SkuMarket
from tests.ledger.world import copper, facility, steel

D = Decimal
T0 = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)
S = LotStatus
K = MovementKind


async def seed(store, *facility_ids: str) -> None:
    async with store.transaction() as tx:
        for obj in (Site("SH1", "Shanghai 1"), Site("QD2", "Qingdao 2"), Zone("SH1-A", "SH1", "Hall A"),
                    Zone("SH1-B", "SH1", "Hall B"), Zone("QD2-Y", "QD2", "Yard"), copper(), steel(),
                    Borrower("B1", "Acme", "B")):
            await tx.insert_reference(obj)
        for fid in facility_ids:
            await tx.insert_facility(facility(fid), T0)


def a_lot(n: int, facility_id: str = "F1", **kw: object) -> Lot:
    args: dict = dict(
        lot_id=f"L{n:03d}", facility_id=facility_id, epc=f"E{n:03d}", sku_id="CU-CATH", quantity=D("25"),
        site_id="SH1", zone_id="SH1-A", status=S.IN_STOCK, received_at=T0,
    )
    args.update(kw)
    return Lot(**args)


# --- reference data --------------------------------------------------------------------------------

async def test_reference_data_round_trips_and_re_adding_the_same_is_a_no_op(store):
    await seed(store)
    async with store.transaction() as tx:
        await tx.insert_reference(Site("SH1", "Shanghai 1"))
        await tx.insert_reference(Sku("CU-CATH", "Copper cathode", "t", D("1000.000"), D("0.010"), "EUR"))
        assert await tx.get_reference(Site, "SH1") == Site("SH1", "Shanghai 1")
        assert await tx.get_reference(Zone, "QD2-Y") == Zone("QD2-Y", "QD2", "Yard")
        assert await tx.get_reference(Sku, "CU-CATH") == copper()
        assert await tx.get_reference(Borrower, "B1") == Borrower("B1", "Acme", "B")
        assert await tx.get_reference(Site, "NOPE") is None
        assert [s.site_id for s in await tx.list_reference(Site)] == ["QD2", "SH1"]
        assert await tx.count("site") == 2


async def test_the_same_id_with_other_fields_is_a_duplicate_id(store):
    await seed(store)
    for clash, ident in [
        (Site("SH1", "Another name"), "SH1"),
        (Zone("SH1-A", "QD2", "Hall A"), "SH1-A"),
        (Borrower("B1", "Acme", "C"), "B1"),
        (Sku("CU-CATH", "Copper cathode", "t", D("1000"), D("0.02"), "EUR"), "CU-CATH"),
    ]:
        with pytest.raises(DuplicateId, match="already exists with other fields") as err:
            async with store.transaction() as tx:
                await tx.insert_reference(clash)
        assert err.value.facts["id"] == ident
    async with store.transaction() as tx:
        assert await tx.get_reference(Site, "SH1") == Site("SH1", "Shanghai 1")


async def test_decimals_keep_every_digit(store):
    fine = Sku("AU-BAR", "Gold bar", "oz", D("0.031103476800000001"), D("0.000001"), "EUR")
    async with store.transaction() as tx:
        await tx.insert_reference(fine)
    async with store.transaction() as tx:
        got = await tx.get_reference(Sku, "AU-BAR")
    assert str(got.unit_mass_kg.normalize()) == "0.031103476800000001"


async def test_a_facility_round_trips_with_its_terms_and_sites(store):
    await seed(store, "F1", "F2")
    async with store.transaction() as tx:
        got = await tx.get_facilities(["F1", "NOPE"])
        assert got == {"F1": facility("F1")}
        assert await tx.get_facilities([]) == {}
        assert await tx.list_facility_ids() == ["F1", "F2"]
        assert await tx.facilities_with_sku("ST-COIL") == ["F1", "F2"]
        assert await tx.facilities_with_sku("AL-INGOT") == []
        assert await tx.lock_heads(["F1", "F2"]) == {"F1": (0, GENESIS), "F2": (0, GENESIS)}
        assert (await tx.count("facility"), await tx.count("facility_sku")) == (2, 4)


async def test_a_second_facility_with_the_same_id_is_a_duplicate_id(store):
    await seed(store, "F1")
    with pytest.raises(DuplicateId, match="facility 'F1'"):
        async with store.transaction() as tx:
            await tx.insert_facility(facility("F1", reserves=D("1")), T0)


async def test_a_failed_transaction_leaves_nothing_behind(store):
    await seed(store, "F1")
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.insert_lots([a_lot(1)])
            await tx.insert_reference(Site("X9", "half-written"))
            raise RuntimeError("boom")
    async with store.transaction() as tx:
        assert await tx.count("lot") == 0
        assert await tx.get_reference(Site, "X9") is None


# --- lots ------------------------------------------------------------------------------------------

async def test_lots_round_trip_exactly(store):
    await seed(store, "F1")
    lot = a_lot(1, quantity=D("24.125"), status=S.PLEDGED, pledged=True, verified=True, zone_id=None)
    async with store.transaction() as tx:
        await tx.insert_lots([lot, a_lot(2, status=S.EXPECTED, received_at=None)])
    async with store.transaction() as tx:
        assert await tx.lots_by_id(["L001", "NOPE"]) == {"L001": lot}
        assert await tx.lots_by_id(["L001"], lock=True) == {"L001": lot}
        assert list(await tx.lots_by_epc(["E002"])) == ["E002"]
        assert [x.lot_id for x in await tx.lots_of_facility("F1")] == ["L001", "L002"]
        assert (await tx.lots_by_id(["L002"]))["L002"].received_at is None
        assert (await tx.lots_by_id(["L001"]))["L001"].received_at == T0  # microseconds kept


async def test_updating_lots_changes_only_those_lots(store):
    await seed(store, "F1")
    async with store.transaction() as tx:
        await tx.insert_lots([a_lot(1), a_lot(2)])
    moved = a_lot(1, zone_id="SH1-B", status=S.PLEDGED, pledged=True, verified=True, quantity=D("24"))
    async with store.transaction() as tx:
        await tx.update_lots([moved])
    async with store.transaction() as tx:
        assert await tx.lots_by_id(["L001", "L002"]) == {"L001": moved, "L002": a_lot(2)}


async def test_an_epc_can_belong_to_one_lot_only(store):
    await seed(store, "F1", "F2")
    async with store.transaction() as tx:
        await tx.insert_lots([a_lot(1)])
    with pytest.raises(DuplicateEpc) as err:
        async with store.transaction() as tx:
            await tx.insert_lots([a_lot(2, facility_id="F2", epc="E001")])
    assert (err.value.epc, err.value.existing_lot) == ("E001", "L001")
    assert "EPC E001 is already registered to lot L001" in str(err.value)
    async with store.transaction() as tx:
        assert await tx.count("lot") == 1


async def test_a_lot_id_can_be_used_once(store):
    await seed(store, "F1")
    async with store.transaction() as tx:
        await tx.insert_lots([a_lot(1)])
    with pytest.raises(DuplicateId, match="lot 'L001'"):
        async with store.transaction() as tx:
            await tx.insert_lots([a_lot(1, epc="E-OTHER")])


async def test_lot_queries_filter_and_page_by_lot_id(store):
    await seed(store, "F1", "F2")
    lots = [
        a_lot(n, facility_id="F2" if n == 4 else "F1",
              zone_id="SH1-B" if n % 2 else "SH1-A", sku_id="ST-COIL" if n == 6 else "CU-CATH",
              status=S.PLEDGED if n in (2, 3) else S.IN_STOCK, pledged=n in (2, 3))
        for n in (7, 3, 1, 6, 2, 5, 4)
    ]
    async with store.transaction() as tx:
        await tx.insert_lots(lots)

    async def query(**kw):
        async with store.transaction() as tx:
            return [x.lot_id for x in await tx.query_lots(LotFilter(**kw))]

    pages, after = [], None
    while page := await query(facility_id="F1", limit=2, after=after):
        pages.append(page)
        after = page[-1]
    assert pages == [["L001", "L002"], ["L003", "L005"], ["L006", "L007"]]
    assert await query(zone_id="SH1-B") == ["L001", "L003", "L005", "L007"]
    assert await query(sku_id="ST-COIL") == ["L006"]
    assert await query(status="pledged") == ["L002", "L003"]
    assert await query(facility_id="F2") == ["L004"]
    assert await query(lot_id="L005", site_id="SH1") == ["L005"]
    assert await query(site_id="QD2") == []
    assert await query(after="L007") == []


# --- the pledge registry ---------------------------------------------------------------------------

async def test_the_pledge_registry_holds_pledges_by_epc_until_they_end(store):
    await seed(store, "F1", "F2")
    async with store.transaction() as tx:
        await tx.insert_lots([a_lot(1), a_lot(2, facility_id="F2")])
        await tx.insert_pledges([a_lot(1), a_lot(2, facility_id="F2")], T0)
    async with store.transaction() as tx:
        assert await tx.pledges_by_epc(["E001", "E002", "E999"]) == {"E001": "F1", "E002": "F2"}
        await tx.delete_pledges(["E001"])
        await tx.delete_pledges([])
        await tx.insert_pledges([], T0)
    async with store.transaction() as tx:
        assert await tx.pledges_by_epc(["E001", "E002"]) == {"E002": "F2"}


async def test_the_pledge_registry_refuses_a_second_pledge_of_the_same_goods(store):
    await seed(store, "F1", "F2")
    async with store.transaction() as tx:
        await tx.insert_pledges([a_lot(1)], T0)
    with pytest.raises((IntegrityError, Conflict)):
        async with store.transaction() as tx:
            await tx.insert_pledges([a_lot(9, facility_id="F2", epc="E001")], T0)
    async with store.transaction() as tx:
        assert await tx.pledges_by_epc(["E001"]) == {"E001": "F1"}


async def test_a_racing_second_pledge_surfaces_as_a_ledger_conflict(store):
    await seed(store, "F1", "F2")
    async with store.transaction() as tx:
        await tx.insert_pledges([a_lot(1)], T0)
    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            await tx.insert_pledges([a_lot(9, facility_id="F2", epc="E001")], T0)


async def test_pledge_refusals_are_kept_in_order_and_found_by_epc(store):
    await seed(store)
    async with store.transaction() as tx:
        await tx.record_pledge_refusal(T0, "E001", "L001", "F2", "F1", "already pledged to F1")
        await tx.record_pledge_refusal(T0 + timedelta(hours=1), "E002", None, "F3", "F1", "again")
        await tx.record_pledge_refusal(T0 + timedelta(hours=2), "E001", "L001", "F3", "F1", "third")
    async with store.transaction() as tx:
        everything = await tx.pledge_refusals()
        mine = await tx.pledge_refusals("E001")
    assert [r["requested_by"] for r in everything] == ["F2", "F3", "F3"]
    assert [(r["requested_by"], r["at"], r["detail"]) for r in mine] == [
        ("F2", T0, "already pledged to F1"),
        ("F3", T0 + timedelta(hours=2), "third"),
    ]


# --- the journal -----------------------------------------------------------------------------------

def journal(facility_id: str, n: int, start: int = 1, prev: str = GENESIS) -> list[JournalEntry]:
    """n entries alternating over three lots and two zones, one hour apart."""
    out = []
    for seq in range(start, start + n):
        lot = a_lot(seq % 3, facility_id=facility_id, epc=f"{facility_id}-E{seq % 3}",
                    zone_id="SH1-A" if seq % 2 else "SH1-B", sku_id="ST-COIL" if seq % 3 == 2 else "CU-CATH")
        kind = K.REGISTRATION if seq <= 3 else K.ZONE_TRANSFER
        e = make_entry(prev, seq, T0 + timedelta(hours=seq), kind, lot, (f"reader-{seq}:1",),
                       "audit" if seq == 5 else None)
        out.append(e)
        prev = e.hash
    return out


async def test_appended_entries_read_back_identical_and_move_the_head(store):
    await seed(store, "F1", "F2")
    f1, f2 = journal("F1", 7), journal("F2", 2)
    async with store.transaction() as tx:
        await tx.append_entries(f1[:4] + f2)
        await tx.append_entries(f1[4:])
        await tx.append_entries([])
    async with store.transaction() as tx:
        assert await tx.lock_heads(["F1", "F2"]) == {"F1": (7, f1[-1].hash), "F2": (2, f2[-1].hash)}
        got = [e async for e in tx.entries("F1")]
    assert got == f1
    assert verify_chain("F1", got) is None


async def test_the_heads_to_lock_for_lots_are_those_of_their_facilities(store):
    await seed(store, "F1", "F2", "F3")
    f1 = journal("F1", 2)
    async with store.transaction() as tx:
        await tx.insert_lots([a_lot(1), a_lot(2), a_lot(3, facility_id="F2")])
        await tx.append_entries(f1)
    async with store.transaction() as tx:
        heads = await tx.lock_heads_of_lots(["L003", "L001", "L002", "NOPE"])
        assert heads == {"F1": (2, f1[-1].hash), "F2": (0, GENESIS)}  # not F3: it owns none of them
        assert await tx.lock_heads_of_lots(["L002"]) == {"F1": (2, f1[-1].hash)}
        assert await tx.lock_heads_of_lots(["NOPE"]) == {}


async def test_entries_are_read_in_seq_order_across_batches_and_up_to_a_time(store):
    await seed(store, "F1")
    f1 = journal("F1", 7)
    async with store.transaction() as tx:
        await tx.append_entries(f1)
    async with store.transaction() as tx:
        assert [e.seq async for e in tx.entries("F1", batch=2)] == [1, 2, 3, 4, 5, 6, 7]
        assert [e.seq async for e in tx.entries("F1", batch=7)] == [1, 2, 3, 4, 5, 6, 7]
        until = [e.seq async for e in tx.entries("F1", until=T0 + timedelta(hours=3), batch=2)]
        assert until == [1, 2, 3]  # inclusive
        assert [e async for e in tx.entries("NOPE")] == []


async def test_a_snapshot_reads_one_instant_and_writes_nothing(store):
    await seed(store, "F1")
    f1 = journal("F1", 4)
    async with store.transaction() as tx:
        await tx.append_entries(f1[:3])
    if store.dialect == "sqlite":  # one transaction at a time: a snapshot is trivially one instant
        async with store.snapshot() as snap:
            assert await snap.journal_head("F1") == (3, f1[2].hash)
        return
    async with store.snapshot() as snap:
        head = await snap.journal_head("F1")
        async with store.transaction() as tx:  # committed while the snapshot is open
            await tx.append_entries(f1[3:])
        assert [e.seq async for e in snap.entries("F1")] == [1, 2, 3]
        assert await snap.journal_head("F1") == head == (3, f1[2].hash)
    with pytest.raises(DBAPIError, match="read-only"):
        async with store.snapshot() as snap:
            await snap.append_entries(journal("F1", 1, start=5, prev=f1[3].hash))
    async with store.transaction() as tx:  # the pooled connection is writable again
        await tx.append_entries(journal("F1", 1, start=5, prev=f1[3].hash))
        assert await tx.journal_head("F1") == (5, journal("F1", 1, start=5, prev=f1[3].hash)[0].hash)


async def test_lots_as_of_a_time_are_what_replaying_the_journal_gives(store):
    await seed(store, "F1", "F2")
    f1 = journal("F1", 8)
    # a late entry: booked last (seq 9) but stamped before the entries 6-8 (L000 back to Hall A)
    late = make_entry(f1[-1].hash, 9, T0 + timedelta(hours=5, minutes=30), K.ZONE_TRANSFER,
                      a_lot(0, epc="F1-E0", zone_id="SH1-A", status=S.QUARANTINED), ("late:1",), None)
    f1.append(late)
    async with store.transaction() as tx:
        await tx.append_entries(f1 + journal("F2", 4))
    instants = [T0, *(e.at for e in f1), T0 + timedelta(days=1)]
    async with store.transaction() as tx:
        for when in instants:
            expected = sorted(replay(f1, when).values(), key=lambda x: x.lot_id)
            assert await tx.lots_as_of(LotFilter("F1", limit=None), when) == expected, when
            for kw in ({"zone_id": "SH1-B"}, {"sku_id": "ST-COIL"}, {"status": "quarantined"},
                       {"lot_id": "L001"}, {"site_id": "QD2"}):
                want = [x for x in expected if all(str(getattr(x, k)) == v for k, v in kw.items())]
                assert await tx.lots_as_of(LotFilter("F1", **kw), when) == want, (when, kw)
            pages, after = [], None
            while page := await tx.lots_as_of(LotFilter("F1", after=after, limit=2), when):
                pages.append([x.lot_id for x in page])
                after = page[-1].lot_id
            assert [i for page in pages for i in page] == [x.lot_id for x in expected]
        assert await tx.lots_as_of(LotFilter("NOPE"), instants[-1]) == []
        # L000's newest entry by seq is the late one (Hall A), though entry 6 (Hall B) is stamped later
        zones = [x.zone_id for x in await tx.lots_as_of(LotFilter("F1"), T0 + timedelta(hours=9))]
        assert zones == ["SH1-A", "SH1-A", "SH1-B"]


async def test_a_seq_can_be_written_once(store):
    await seed(store, "F1")
    f1 = journal("F1", 2)
    async with store.transaction() as tx:
        await tx.append_entries(f1)
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.append_entries([f1[1]])


async def test_movements_filter_and_page_by_seq(store):
    await seed(store, "F1", "F2")
    async with store.transaction() as tx:
        await tx.append_entries(journal("F1", 9) + journal("F2", 3))

    async def seqs(**kw):
        async with store.transaction() as tx:
            return [e.seq for e in await tx.movements(MovementFilter("F1", **kw))]

    assert await seqs() == list(range(1, 10))
    assert await seqs(lot_id="L001") == [1, 4, 7]
    assert await seqs(kind="registration") == [1, 2, 3]
    assert await seqs(zone_id="SH1-B") == [2, 4, 6, 8]
    assert await seqs(site_id="SH1", sku_id="ST-COIL") == [2, 5, 8]
    assert await seqs(site_id="QD2") == []
    # since is inclusive, until exclusive: hours 3, 4 and 5
    assert await seqs(since=T0 + timedelta(hours=3), until=T0 + timedelta(hours=6)) == [3, 4, 5]
    pages, after = [], None
    while page := await seqs(after_seq=after, limit=4, lot_id=None):
        pages.append(page)
        after = page[-1]
    assert pages == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert await seqs(after_seq=3, kind="zone_transfer", limit=2) == [4, 5]
    async with store.transaction() as tx:
        (fifth,) = await tx.movements(MovementFilter("F1", after_seq=4, limit=1))
    assert (fifth.reason, fifth.evidence) == ("audit", ("reader-5:1",))


# --- prices and markets ----------------------------------------------------------------------------

async def test_price_history_is_oldest_first_newest_kept_and_cut_at_a_time(store):
    await seed(store)
    points = [PricePoint("CU-CATH", T0 + timedelta(days=d), D(f"80{d}0.5"), "EUR", "LME")
              for d in (3, 1, 4, 2)]
    async with store.transaction() as tx:
        for p in points:
            await tx.insert_price(p)
        await tx.insert_price(PricePoint("ST-COIL", T0, D("600"), "EUR", "SHFE"))
    async with store.transaction() as tx:
        everything = await tx.price_history("CU-CATH", None, 100)
        last_two = await tx.price_history("CU-CATH", None, 2)
        until = await tx.price_history("CU-CATH", T0 + timedelta(days=2), 100)
    assert [p.at.day - T0.day for p in everything] == [1, 2, 3, 4]
    assert everything[0] == points[1]  # price, currency, source and time round-trip
    assert [p.price for p in last_two] == [D("8030.5"), D("8040.5")]
    assert [p.price for p in until] == [D("8010.5"), D("8020.5")]  # inclusive


async def test_two_prices_at_the_same_time_keep_their_arrival_order(store):
    await seed(store)
    async with store.transaction() as tx:
        await tx.insert_price(PricePoint("CU-CATH", T0, D("8000"), "EUR", "LME"))
        await tx.insert_price(PricePoint("CU-CATH", T0, D("8001"), "EUR", "LME"))
    async with store.transaction() as tx:
        assert [p.price for p in await tx.price_history("CU-CATH", T0, 10)] == [D("8000"), D("8001")]
        assert [p.price for p in await tx.price_history("CU-CATH", T0, 1)] == [D("8001")]


async def test_the_sku_market_is_upserted(store):
    await seed(store)
    first = SkuMarket("CU-CATH", D("8000"), T0, None, 0)
    second = SkuMarket("CU-CATH", D("8100.25"), T0 + timedelta(days=1), D("0.0123456789"), 21)
    async with store.transaction() as tx:
        await tx.put_sku_market(first)
        assert await tx.sku_markets(["CU-CATH", "ST-COIL"]) == {"CU-CATH": first}
        await tx.put_sku_market(second)
    async with store.transaction() as tx:
        assert await tx.sku_markets(["CU-CATH"]) == {"CU-CATH": second}
        assert await tx.count("sku_market") == 1


# --- positions, facility states, ageing ------------------------------------------------------------

async def test_positions_are_stored_per_facility_and_sku_and_updated_in_place(store):
    await seed(store, "F1", "F2")
    rows = [
        PositionRow("F2", "CU-CATH", D("0"), D("0"), None, None, D("0.6")),
        PositionRow("F1", "ST-COIL", D("0"), D("0"), None, None, D("0.6")),
        PositionRow("F1", "CU-CATH", D("0"), D("0"), None, None, D("0.6")),
    ]
    async with store.transaction() as tx:
        await tx.insert_positions(rows)
        await tx.insert_positions([])
    qty = replace(rows[2], pledged_qty=D("50.5"), eligible_qty=D("25.25"))
    priced = replace(rows[2], price=D("8000"), price_at=T0, haircut=D("0.104201"))
    async with store.transaction() as tx:
        await tx.update_position_quantities([qty])
        await tx.update_position_prices([priced])
        await tx.update_position_quantities([])
        await tx.update_position_prices([])
    async with store.transaction() as tx:
        got = await tx.positions(["F1"])
        both = await tx.positions(["F2", "F1"])
    expected = PositionRow("F1", "CU-CATH", D("50.5"), D("25.25"), D("8000"), T0, D("0.104201"))
    assert got == [expected, rows[1]]
    keys = [(r.facility_id, r.sku_id) for r in both]
    assert keys == [("F1", "CU-CATH"), ("F1", "ST-COIL"), ("F2", "CU-CATH")]


async def test_facility_states_are_upserted(store):
    await seed(store, "F1", "F2")
    a = FacilityStateRow("F1", D("1000.5"), D("2000"), T0)
    b = FacilityStateRow("F1", D("900"), D("1800.75"), T0 + timedelta(minutes=5))
    c = FacilityStateRow("F2", D("0"), D("0"), T0)
    async with store.transaction() as tx:
        await tx.put_facility_states([a, c])
        await tx.put_facility_states([])
    async with store.transaction() as tx:
        await tx.put_facility_states([b])
    async with store.transaction() as tx:
        assert await tx.facility_states(["F1", "F2", "NOPE"]) == {"F1": b, "F2": c}


async def test_aged_lots_are_pledged_lots_received_before_their_facility_cutoff(store):
    await seed(store, "F1", "F2")
    old, cutoff = T0 - timedelta(days=200), T0 - timedelta(days=180)
    lots = [
        a_lot(1, status=S.PLEDGED, pledged=True, received_at=old),  # aged
        a_lot(2, status=S.PLEDGED, pledged=True, received_at=cutoff),  # exactly at the cutoff: not yet
        a_lot(3, status=S.IN_STOCK, received_at=old),  # not pledged
        a_lot(4, status=S.QUARANTINED, pledged=True, received_at=old),  # not in status pledged
        a_lot(5, status=S.PLEDGED, pledged=True, received_at=T0),  # fresh
        a_lot(6, facility_id="F2", status=S.PLEDGED, pledged=True, received_at=old),  # F2: other cutoff
        a_lot(7, status=S.EXPECTED, pledged=True, received_at=None),
    ]
    async with store.transaction() as tx:
        await tx.insert_lots(lots)
    async with store.transaction() as tx:
        aged = await tx.aged_lots({"F1": cutoff, "F2": old - timedelta(days=1)})
        assert await tx.aged_lots({}) == []
        assert sorted(x.lot_id for x in await tx.aged_lots({"F2": cutoff})) == ["L006"]
    assert [x.lot_id for x in aged] == ["L001"]
