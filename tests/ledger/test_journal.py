"""The journal: a hash chain per facility that tells an edit, a gap or a swap, and replays to lots."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise

import pytest

from ledger.core.journal import (
    GENESIS,
    JournalEntry,
    canonical_bytes,
    chain_hash,
    make_entry,
    quantity_by_status,
    replay,
    verify_chain,
)
from ledger.core.lot import Lot, LotStatus, MovementKind

D = Decimal
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
S = LotStatus
K = MovementKind


def a_lot(lot_id: str = "L1", status: LotStatus = S.IN_STOCK, **kw: object) -> Lot:
    args: dict = dict(
        lot_id=lot_id, facility_id="F1", epc=f"EPC-{lot_id}", sku_id="CU-CATH", quantity=D("25"),
        site_id="SH1", zone_id="SH1-A", status=status,
    )
    args.update(kw)
    return Lot(**args)


def chain(*steps: tuple[MovementKind, Lot]) -> list[JournalEntry]:
    entries: list[JournalEntry] = []
    prev = GENESIS
    for i, (kind, lot) in enumerate(steps, start=1):
        e = make_entry(prev, i, T0 + timedelta(hours=i), kind, lot, (f"gate-1:{i}",), None)
        entries.append(e)
        prev = e.hash
    return entries


def story() -> list[JournalEntry]:
    """L1 registered, pledged and received; L2 registered; L1 moves to hall B."""
    return chain(
        (K.REGISTRATION, a_lot("L1", S.EXPECTED)),
        (K.PLEDGE, a_lot("L1", S.EXPECTED, pledged=True)),
        (K.REGISTRATION, a_lot("L2", S.EXPECTED)),
        (K.RECEIPT, a_lot("L1", S.PLEDGED, pledged=True, received_at=T0 + timedelta(hours=4))),
        (K.ZONE_TRANSFER, a_lot("L1", S.PLEDGED, pledged=True, zone_id="SH1-B")),
    )


def test_a_fresh_chain_starts_at_genesis_and_links_every_entry_to_the_one_before():
    entries = story()
    assert entries[0].prev_hash == GENESIS
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in pairwise(entries))
    assert len({e.hash for e in entries}) == 5
    assert verify_chain("F1", entries) is None


def test_an_empty_chain_verifies():
    assert verify_chain("F1", []) is None


def test_the_hash_is_sha256_of_the_previous_hash_and_the_canonical_bytes():
    e = story()[0]
    payload = canonical_bytes(e.facility_id, e.seq, e.at, e.kind, e.lot, e.evidence, e.reason)
    assert e.hash == chain_hash(GENESIS, payload)
    assert len(e.hash) == 64 and int(e.hash, 16) >= 0
    assert b'"quantity":"25"' in payload and b'"at":"2026-01-05T10:00:00.000000Z"' in payload


def test_the_canonical_form_ignores_how_a_decimal_or_a_time_zone_is_written():
    shanghai = T0.astimezone(timezone(timedelta(hours=8)))
    a = canonical_bytes("F1", 1, T0, K.PLEDGE, a_lot(quantity=D("25.000")), (), None)
    b = canonical_bytes("F1", 1, shanghai, K.PLEDGE, a_lot(quantity=D("25")), (), None)
    assert a == b


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: replace(e, lot=replace(e.lot, quantity=D("250"))),
        lambda e: replace(e, lot=replace(e.lot, status=S.IN_STOCK)),
        lambda e: replace(e, lot=replace(e.lot, zone_id="SH1-C")),
        lambda e: replace(e, lot=replace(e.lot, verified=True)),
        lambda e: replace(e, lot=replace(e.lot, epc="EPC-OTHER")),
        lambda e: replace(e, at=e.at + timedelta(microseconds=1)),
        lambda e: replace(e, kind=K.RECEIPT),
        lambda e: replace(e, evidence=()),
        lambda e: replace(e, reason="typo fixed"),
        lambda e: replace(e, hash="f" * 64),
        lambda e: replace(e, lot=replace(e.lot, facility_id="F2")),
    ],
    ids=["quantity", "status", "zone", "verified", "epc", "at", "kind", "evidence", "reason", "hash",
         "lot-facility"],
)
def test_an_edited_entry_is_reported_as_the_first_break(edit):
    entries = story()
    entries[1] = edit(entries[1])
    broken = verify_chain("F1", entries)
    assert broken is not None
    assert (broken.facility_id, broken.seq) == ("F1", 2)
    assert "edited" in broken.reason


def test_an_entry_rehashed_after_an_edit_still_breaks_the_link_of_the_next():
    entries = story()
    edited = replace(entries[1].lot, quantity=D("250"))
    forged = make_entry(entries[0].hash, 2, entries[1].at, K.PLEDGE, edited)
    entries[1] = forged
    broken = verify_chain("F1", entries)
    assert broken is not None and broken.seq == 3
    assert "previous-hash link" in broken.reason


def test_a_deleted_entry_is_reported_missing():
    entries = story()
    del entries[2]
    broken = verify_chain("F1", entries)
    assert broken is not None and broken.seq == 3
    assert broken.reason == "entry 3 is missing (found 4)"


def test_swapped_entries_are_reported():
    entries = story()
    entries[1], entries[2] = entries[2], entries[1]
    broken = verify_chain("F1", entries)
    assert broken is not None and broken.seq == 2


def test_another_facility_s_chain_does_not_verify_as_this_one():
    assert verify_chain("F2", story()) is not None


def test_replay_gives_each_lot_its_last_state():
    lots = replay(story())
    assert set(lots) == {"L1", "L2"}
    assert lots["L1"].zone_id == "SH1-B" and lots["L1"].status == S.PLEDGED
    assert lots["L2"].status == S.EXPECTED


def test_replay_as_of_a_past_time_ignores_later_entries():
    entries = story()
    assert replay(entries, as_of=T0) == {}
    lots = replay(entries, as_of=T0 + timedelta(hours=2))  # entries at +1h and +2h, inclusive
    assert lots == {"L1": a_lot("L1", S.EXPECTED, pledged=True)}
    assert replay(entries, as_of=T0 + timedelta(days=1)) == replay(entries)


def test_quantity_by_status_sums_quantities_per_status():
    lots = [a_lot("L1", quantity=D("2.5")), a_lot("L2", quantity=D("3")), a_lot("L3", S.MISSING)]
    assert quantity_by_status(lots) == {S.IN_STOCK: D("5.5"), S.MISSING: D("25")}
    assert quantity_by_status([]) == {}
