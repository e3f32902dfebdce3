"""Ingest as a story, without a broker: messages in, evidence, passages and movements out.

Every test runs on SQLite and PostgreSQL (the `store` fixture); time is a FakeClock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from gateway.ingest import Ingest, _Batch
from gateway.tables import (
    camera_count,
    dead_letter,
    device,
    device_event,
    device_state,
    passage,
    quantity_observation,
    seen_event,
    tag_read,
    weight_observation,
)
from gateway.topics import events_topic, status_topic
from ledger.core.lot import LotStatus, Movement, MovementKind
from ledger.store.tables import journal_entry
from tests.gateway.ingest_world import SECRET, World, bad_inputs, epc, jbytes, make_world, message, prime

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
async def world(store: Any, clock: Any) -> World:
    return await make_world(store, clock)


async def rows(world: World, table: Any, *where: Any) -> list[Any]:
    async with world.ledger.transaction() as tx:
        return list(await tx.conn.execute(select(table).where(*where)))


async def count(world: World, table: Any) -> int:
    async with world.ledger.transaction() as tx:
        return int((await tx.conn.execute(select(func.count()).select_from(table))).scalar_one())


async def run(ingest: Ingest, *msgs: tuple[str, bytes], retain: bool = False) -> Any:
    return await ingest.process([message(t, p, i, retain) for i, (t, p) in enumerate(msgs, 1)])


# --------------------------------------------------------------------------- evidence


async def test_every_native_type_becomes_evidence(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    now = world.clock()
    zone, scale, cam = world.native("zone-1"), world.native("scale-1"), world.native("cam-1")
    report = await run(
        ingest,
        zone.read(epc(1), now),
        scale.event("weight.sample", {"mass_kg": "25000.5", "stable": True}, now),
        scale.event("weight.sample", {"mass_kg": 24990, "stable": False}, now),
        cam.event("camera.count", {"label": "coil", "count": 3, "confidence": 0.9,
                                   "epcs": [epc(1).lower()]}, now),
        world.native("gate-1").heartbeat(now),
    )
    assert report.committed == 5 and not report.dead_letters

    [read] = await rows(world, tag_read)
    assert (read.site_id, read.zone_id, read.epc, read.gate, read.passage_id) == (
        "SH1", "SH1-B", epc(1), False, None)
    assert read.event_key == "zone-1:1"
    [weight] = await rows(world, weight_observation)  # the unstable sample is not evidence
    assert (weight.zone_id, str(weight.mass_kg), weight.stable) == ("SH1-A", "25000.5", True)
    [count_row] = await rows(world, camera_count)
    assert (count_row.label, count_row.count, count_row.epcs) == ("coil", 3, [epc(1)])
    [gate] = await rows(world, device_state, device_state.c.device_id == "gate-1")
    assert gate.online and gate.last_seq == 1 and gate.last_seen_at == now
    events = await rows(world, device_event, device_event.c.device_id == "gate-1")
    assert [(e.kind, e.source) for e in events] == [("online", "heartbeat")]


async def test_vendor_formats_become_evidence_as_the_devices_send_them(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    sample = {name: (SAMPLES / name).read_bytes() for name in (
        "impinj_stream.ndjson", "zebra_run_together.json", "epcis_document.jsonld",
        "mtsics_lines.txt", "camera_event.json")}
    report = await run(
        ingest,
        (events_topic("SH1", "impinj-1"), sample["impinj_stream.ndjson"]),
        (events_topic("SH1", "zebra-1"), sample["zebra_run_together.json"]),
        (events_topic("SH1", "epcis-1"), sample["epcis_document.jsonld"]),
        (events_topic("SH1", "scalej-1"), jbytes({"net": "1250.5", "unit": "kg", "stable": True,
                                                  "ts": "2026-01-05T08:59:00Z", "seq": 7})),
        (events_topic("SH1", "sics-1"), sample["mtsics_lines.txt"]),
        (events_topic("SH1", "axis-1"), sample["camera_event.json"]),
    )
    assert report.committed == 6, report.dead_letters

    impinj = await rows(world, tag_read, tag_read.c.device_id == "impinj-1")
    assert len(impinj) == 3 and all(r.gate and r.zone_id == "SH1-A" for r in impinj)
    zebra = await rows(world, tag_read, tag_read.c.device_id == "zebra-1")
    assert sorted(r.epc for r in zebra) == ["3034257BF7194E4000001A85"] * 2 + ["3034257BF7194E4000001A86"]
    assert await rows(world, tag_read, tag_read.c.device_id == "epcis-1")
    assert await rows(world, quantity_observation, quantity_observation.c.device_id == "epcis-1")
    masses = sorted(str(r.mass_kg) for r in await rows(world, weight_observation))
    assert "1250.5" in masses and "100.00" in masses  # scale JSON and MT-SICS "S S" (not "S D")
    assert not await rows(world, weight_observation, weight_observation.c.device_id == "sics-1",
                          weight_observation.c.stable.is_(False))
    labels = {r.label: r.count for r in await rows(world, camera_count)}
    assert labels["pallet"] == 12


async def test_a_zone_reader_gives_presence_evidence_and_never_moves_a_lot(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    entries = await count(world, journal_entry)
    zone = world.native("zone-1")
    now = world.clock()
    await run(ingest, *[zone.read(epc(1), now + timedelta(seconds=k)) for k in range(5)])
    world.clock.advance(seconds=30)
    await ingest.tick()
    assert await count(world, tag_read) == 5
    assert await count(world, passage) == 0
    assert await count(world, journal_entry) == entries
    assert (await world.ledger.lot("L000001")).status == LotStatus.EXPECTED


# --------------------------------------------------------------------------- gates and the ledger


async def pass_gate(world: World, ingest: Ingest, tag: str, inward: bool = True) -> None:
    gate = world.native("gate-1")
    await run(ingest, *gate.passage(tag, world.clock(), inward))
    world.clock.advance(seconds=10)
    await ingest.tick()


async def test_an_inbound_passage_of_an_expected_pledged_lot_is_a_receipt_that_raises_the_bb(
    world: World,
) -> None:
    ingest = world.ingest()
    await ingest.start()
    before = (await world.ledger.borrowing_base("F1")).borrowing_base

    await pass_gate(world, ingest, epc(1))

    lot = await world.ledger.lot("L000001")
    assert (lot.status, lot.verified, lot.site_id, lot.zone_id) == (LotStatus.PLEDGED, True, "SH1", "SH1-A")
    assert (await world.ledger.borrowing_base("F1")).borrowing_base > before
    [p] = await rows(world, passage)
    assert (p.direction, p.reads, p.lot_id, p.facility_id, p.outcome) == ("in", 6, "L000001", "F1", "receipt")
    reads = await rows(world, tag_read, tag_read.c.device_id == "gate-1")
    assert {r.passage_id for r in reads} == {p.passage_id}
    [entry] = [e for e in await world.ledger.positions(facility_id="F1", lot_id="L000001")]
    assert entry.received_at is not None
    journal = await rows(world, journal_entry, journal_entry.c.kind == "receipt")
    assert len(journal) == 1 and list(journal[0].evidence) == [f"gate-1:{k}" for k in range(1, 7)]
    assert await world.ledger.verify("F1") is None


async def test_an_outbound_passage_without_a_release_is_recorded_as_a_removal(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    await pass_gate(world, ingest, epc(2))
    bb_in = (await world.ledger.borrowing_base("F1")).borrowing_base

    await pass_gate(world, ingest, epc(2), inward=False)

    assert (await world.ledger.lot("L000002")).status == LotStatus.REMOVED
    assert (await world.ledger.borrowing_base("F1")).borrowing_base < bb_in
    outcomes = [r.outcome for r in await rows(world, passage)]
    assert sorted(outcomes) == ["receipt", "removal_without_release"]
    assert world.metrics.value("pledge_gateway_passages_total", outcome="removal_without_release") == 1


async def test_an_outbound_passage_with_an_approved_release_is_an_authorised_release(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    await pass_gate(world, ingest, epc(3))
    await world.ledger.apply([Movement(MovementKind.RELEASE_AUTHORISATION, "L000003", world.clock(),
                                       ("R-1",))])

    await pass_gate(world, ingest, epc(3), inward=False)

    lot = await world.ledger.lot("L000003")
    assert lot.status == LotStatus.RELEASED and not lot.pledged
    assert {r.outcome for r in await rows(world, passage)} == {"receipt", "authorised_release"}


async def test_an_unknown_tag_is_recorded_and_never_collateral(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    entries = await count(world, journal_entry)
    await pass_gate(world, ingest, "DEADBEEF0000000000000001")
    [p] = await rows(world, passage)
    assert (p.outcome, p.lot_id, p.direction) == ("unknown_tag", None, "in")
    assert await count(world, journal_entry) == entries


async def test_a_second_inbound_passage_is_evidence_only(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    await pass_gate(world, ingest, epc(1))
    entries = await count(world, journal_entry)
    await pass_gate(world, ingest, epc(1))
    assert sorted(r.outcome for r in await rows(world, passage)) == ["evidence_only", "receipt"]
    assert await count(world, journal_entry) == entries


# --------------------------------------------------------------------------- crashes and duplicates


async def test_a_crash_mid_passage_loses_nothing_and_applies_nothing_twice(world: World) -> None:
    gate = world.native("gate-1")
    reads = gate.passage(epc(4), world.clock())
    first = world.ingest()
    await first.start()
    await run(first, *reads[:3])  # committed and acknowledged; the passage is still open
    # crash: `first` is dropped without closing anything; the broker redelivers what was in flight
    second = world.ingest()
    assert await second.start() == 3
    second.resume()
    await run(second, *reads[2:])  # reads[2] was committed already: a redelivery
    world.clock.advance(seconds=10)
    await second.tick()

    [p] = await rows(world, passage)
    assert (p.reads, p.direction, p.outcome) == (6, "in", "receipt")
    assert await count(world, tag_read) == 6
    # a third process finds nothing open: the passage is never applied again
    third = world.ingest()
    assert await third.start() == 0
    world.clock.advance(seconds=10)
    await third.tick()
    assert len(await rows(world, journal_entry, journal_entry.c.kind == "receipt")) == 1


async def test_the_same_message_twice_has_no_second_effect(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    zone = world.native("zone-1")
    read = zone.read(epc(1), world.clock())
    impinj = (events_topic("SH1", "impinj-1"), (SAMPLES / "impinj_stream.ndjson").read_bytes())
    first = await run(ingest, read, read, impinj)  # twice in one batch
    again = await run(ingest, read, impinj)  # and again later
    assert (first.committed, first.duplicates) == (2, 1)
    assert (again.committed, again.duplicates) == (0, 2)
    assert await count(world, tag_read) == 1 + 3
    assert world.metrics.value("pledge_gateway_duplicates_total") == 3


async def test_native_messages_reordered_within_a_batch_are_all_kept(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    zone = world.native("zone-1")
    now = world.clock()
    one, two, three = (zone.read(epc(n), now) for n in (1, 2, 3))
    report = await run(ingest, three, one, two)
    assert report.committed == 3 and not report.dead_letters
    [state] = await rows(world, device_state, device_state.c.device_id == "zone-1")
    assert state.last_seq == 3


async def test_a_poison_message_is_dead_lettered_alone(pg_store: Any, clock: Any) -> None:
    """PostgreSQL text cannot hold NUL: the store refuses that one message, the rest commit."""
    world = await make_world(pg_store, clock)
    ingest = world.ingest()
    await ingest.start()
    cam, zone = world.native("cam-1"), world.native("zone-1")
    now = world.clock()
    report = await run(ingest, zone.read(epc(1), now),
                       cam.event("camera.count", {"label": "coil\u0000", "count": 1}, now),
                       zone.read(epc(2), now))
    assert report.committed == 2 and report.dead_letters == {"ledger_rejected": 1}
    assert await count(world, tag_read) == 2
    [letter] = await rows(world, dead_letter)
    assert letter.reason == "ledger_rejected" and letter.device_id == "cam-1"


async def test_two_gateways_holding_the_same_events_at_once_commit_them_once(
        pg_store: Any, clock: Any) -> None:
    """A shared subscription deals a redelivery to the other gateway while the first one's batch
    is still open: the second batch waits for the first's keys (no row lock held meanwhile),
    then finds them committed - duplicates, or stale where the same seq carries other bytes."""
    world = await make_world(pg_store, clock)
    first, second = world.ingest(), world.ingest()
    await first.start()
    await second.start()
    zone = world.native("zone-1")
    now = world.clock()
    reads = [zone.read(epc(n), now) for n in (1, 2, 3)]
    reused = zone.event("rfid.read", {"epc": epc(9), "antenna": 2, "rssi_dbm": -50}, now, seq=3)
    items = [await first._prepare(message(t, p, i), now) for i, (t, p) in enumerate(reads, 1)]
    async with world.ledger.transaction() as tx:  # the first gateway's batch, not committed yet
        await _Batch(tx.conn, tx.dialect, now, first.horizon).write(items)
        late = asyncio.create_task(run(second, reads[0], reads[1], reused))
        await _until_a_backend_waits_for_a_lock(pg_store)
        assert not late.done()
    report = await late
    assert (report.committed, report.duplicates) == (0, 2)
    assert report.dead_letters == {"stale_sequence": 1}
    assert await count(world, tag_read) == 3
    assert await count(world, seen_event) == 3
    [state] = await rows(world, device_state, device_state.c.device_id == "zone-1")
    assert state.last_seq == 3


async def _until_a_backend_waits_for_a_lock(store: Any) -> None:
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock' AND query ILIKE '%seen_event%'")
    for _ in range(1000):
        async with store.engine.connect() as conn:
            if (await conn.execute(query)).scalar_one():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the second batch never waited for the first one's keys")


# --------------------------------------------------------------------------- bad input


async def test_bad_input_is_dead_lettered_with_its_reason_and_changes_nothing(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    await run(ingest, prime(world))
    entries = await count(world, journal_entry)
    for n, (reason, (topic, raw)) in enumerate(bad_inputs(world).items(), 1):
        report = await run(ingest, (topic, raw))

        assert report.dead_letters == {reason: 1}
        letters = await rows(world, dead_letter, dead_letter.c.reason == reason)
        assert [(d.topic, d.size, bytes(d.raw)) for d in letters] == [(topic, len(raw), raw[:262_144])]
        assert letters[0].at == world.clock()
        assert world.metrics.value("pledge_gateway_dead_letters_total", reason=reason) == 1
        assert await count(world, dead_letter) == n
    assert await count(world, journal_entry) == entries
    assert await count(world, tag_read) == 1 and await count(world, seen_event) == 1  # prime's
    assert await count(world, passage) == 0


async def test_a_device_publishing_under_another_site_is_refused(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    read = world.native("gate-1").read(epc(1), world.clock())[1]
    report = await run(ingest, (events_topic("QD2", "gate-1"), read))
    assert report.dead_letters == {"device_mismatch": 1}


async def test_an_unknown_format_is_dead_lettered(world: World) -> None:
    async with world.ledger.transaction() as tx:  # registered by a newer platform version
        await tx.conn.execute(device.insert().values(
            site_id="SH1", device_id="spb-1", kind="rfid_zone", zone_id="SH1-A", format="sparkplug",
            secret=None, antenna_sides={}, heartbeat_interval_s=30, registered_at=world.clock(),
            active=True))
    ingest = world.ingest()
    await ingest.start()
    report = await run(ingest, (events_topic("SH1", "spb-1"), b"\x08\x01"))
    assert report.dead_letters == {"unknown_format": 1}


async def test_replayed_and_stale_sequence_numbers(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    zone = world.native("zone-1")
    now = world.clock()
    first = [zone.read(epc(1), now) for _ in range(5)]
    await run(ingest, *first)
    forged = zone.event("rfid.read", {"epc": epc(6), "antenna": 1, "rssi_dbm": -50}, now, seq=5)
    old = zone.event("rfid.read", {"epc": epc(6), "antenna": 1, "rssi_dbm": -50}, now, seq=2)
    report = await run(ingest, first[4], forged, old)
    assert report.duplicates == 1  # the exact redelivery of seq 5
    assert report.dead_letters == {"stale_sequence": 2}  # seq 5 reused, and seq 2 re-sent anew
    assert await count(world, tag_read) == 5


# --------------------------------------------------------------------------- health and dedup state


async def test_heartbeats_status_and_silence(world: World) -> None:
    ingest = world.ingest()
    await ingest.start()
    gate = world.native("gate-1")
    status = status_topic("SH1", "gate-1")
    await run(ingest, gate.heartbeat(world.clock()))
    world.clock.advance(seconds=44)  # interval 30 s x grace 1.5 = 45 s
    assert await ingest.sweep(world.clock()) == 0
    world.clock.advance(seconds=2)
    assert await ingest.sweep(world.clock()) == 1
    assert await ingest.sweep(world.clock()) == 0  # one event per transition
    await run(ingest, gate.heartbeat(world.clock()))
    await run(ingest, (status, b"offline"))  # the last will
    await run(ingest, (status, b'{"status": "online"}'), retain=True)  # stale retained state
    events = await rows(world, device_event, device_event.c.device_id == "gate-1")
    assert [(e.kind, e.source) for e in events] == [
        ("online", "heartbeat"), ("offline", "sweep"), ("online", "heartbeat"), ("offline", "status")]
    assert (await world.registry.status("gate-1")).online is False
    assert (await run(ingest, (status, b"bogus"))).dead_letters == {"bad_value": 1}


async def test_dedup_keys_are_pruned_by_age_and_old_native_replays_stay_refused(world: World) -> None:
    ingest = world.ingest(dedup_retention_s=3600)
    await ingest.start()
    zone = world.native("zone-1")
    read = zone.read(epc(1), world.clock())
    await run(ingest, read)
    world.clock.advance(seconds=1800)
    assert await ingest.prune(world.clock()) == 0
    assert (await run(ingest, read)).duplicates == 1
    world.clock.advance(seconds=1801)
    assert await ingest.prune(world.clock()) == 1
    assert await count(world, seen_event) == 0
    # the key is forgotten, but the seq high-water mark still refuses the old message
    assert (await run(ingest, read)).dead_letters == {"stale_sequence": 1}
    assert await count(world, tag_read) == 1


async def test_a_passage_the_ledger_refuses_is_kept_with_a_dead_letter(world: World) -> None:
    async with world.ledger.transaction() as tx:  # a gate whose zone the ledger does not know
        await tx.conn.execute(device.insert().values(
            site_id="SH1", device_id="gate-x", kind="rfid_gate", zone_id="SH1-GONE", format="native",
            secret=SECRET.hex(), antenna_sides={"1": "outside", "2": "inside"},
            heartbeat_interval_s=30, registered_at=world.clock(), active=True))
        await tx.conn.execute(device_state.insert().values(
            site_id="SH1", device_id="gate-x", online=False))
    ingest = world.ingest()
    await ingest.start()
    gate = world.native("gate-x")
    await run(ingest, *gate.passage(epc(5), world.clock()))
    world.clock.advance(seconds=10)
    await ingest.tick()
    [p] = await rows(world, passage)
    assert p.outcome == "ledger_rejected"
    [letter] = await rows(world, dead_letter)
    assert letter.reason == "ledger_rejected" and "SH1-GONE" in letter.detail
    assert (await world.ledger.lot("L000005")).status == LotStatus.EXPECTED


async def test_a_late_native_message_is_new_within_the_horizon_and_stale_beyond(world: World) -> None:
    """Reordering across a shared subscription: seq 3 committed after seq 5 is still new; an
    unseen seq older than the dedup horizon (retention - skew) is a replay: stale."""
    ingest = world.ingest(dedup_retention_s=3600)
    await ingest.start()
    zone = world.native("zone-1")
    now = world.clock()
    early = zone.event("rfid.read", {"epc": epc(1), "antenna": 1, "rssi_dbm": -50}, now, seq=3)
    old = zone.event("rfid.read", {"epc": epc(1), "antenna": 1, "rssi_dbm": -50},
                     now - timedelta(seconds=3300), seq=2)
    await run(ingest, zone.event("rfid.read", {"epc": epc(2), "antenna": 1, "rssi_dbm": -50}, now, seq=5))
    report = await run(ingest, early, old)
    assert (report.committed, report.late, report.dead_letters) == (1, 1, {"stale_sequence": 1})
    assert world.metrics.value("pledge_gateway_late_total") == 1
    [state] = await rows(world, device_state, device_state.c.device_id == "zone-1")
    assert state.last_seq == 5
