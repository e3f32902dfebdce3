"""The RFID gate: many reads of a tag passing a door become one passage with a direction."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.device import AntennaSide
from gateway.observation import Direction, TagRead
from gateway.portal import Passage, Portal

T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
SIDES: dict[int, AntennaSide] = {1: "outside", 2: "inside", 3: "outside"}
EPC = "3034257BF7194E4000001A85"
_counter = iter(range(10**9))


def read(
    seconds: float,
    antenna: int | None = 1,
    epc: str = EPC,
    device: str = "gate-01",
    direction: Direction | None = None,
) -> TagRead:
    at = T0 + timedelta(seconds=seconds)
    return TagRead(device, at, f"{device}:{next(_counter)}", epc, antenna, None, direction)


def run(portal: Portal, *reads: TagRead) -> list[Passage]:
    out: list[Passage] = []
    for r in reads:
        out.extend(portal.feed(r))
    return out


def test_a_tag_carried_in_is_one_passage_in() -> None:
    portal = Portal(2.0, SIDES)
    reads = [read(0, 1), read(0.3, 1), read(0.9, 2), read(1.4, 2)]
    assert run(portal, *reads) == []
    assert portal.flush(T0 + timedelta(seconds=3.4)) == []  # quiet for exactly 2 s: not yet
    [passage] = portal.flush(T0 + timedelta(seconds=3.5))
    assert passage == Passage(
        "gate-01", EPC, "in", T0, T0 + timedelta(seconds=1.4), 4, tuple(r.event_key for r in reads)
    )
    assert len(portal) == 0


def test_inside_first_is_out() -> None:
    portal = Portal(2.0, SIDES)
    run(portal, read(0, 2), read(0.5, 3))
    [passage] = portal.flush(T0 + timedelta(minutes=1))
    assert passage.direction == "out"


@pytest.mark.parametrize(
    ("antennas", "sides"),
    [((1, 1, 3), SIDES), ((2, 2), SIDES), ((7, 8), SIDES), ((1, 2), {})],
)
def test_one_side_or_unmapped_antennas_give_no_direction(
    antennas: tuple[int, ...], sides: dict[int, AntennaSide]
) -> None:
    portal = Portal(2.0, sides)
    run(portal, *(read(i * 0.1, a) for i, a in enumerate(antennas)))
    [passage] = portal.flush(T0 + timedelta(minutes=1))
    assert passage.direction is None


def test_the_readers_own_direction_wins_and_the_latest_verdict_counts() -> None:
    portal = Portal(2.0, SIDES)
    run(portal, read(0, 2), read(0.2, 1, direction="out"), read(0.4, 1, direction="in"), read(0.6, None))
    [passage] = portal.flush(T0 + timedelta(minutes=1))
    assert passage.direction == "in"


def test_a_read_after_the_window_starts_a_second_passage() -> None:
    portal = Portal(2.0, SIDES)
    assert run(portal, read(0, 1), read(1, 2)) == []
    [first] = portal.feed(read(3.5, 2))  # 2.5 s after the last read: the first pass is over
    assert (first.direction, first.reads, first.last_seen) == ("in", 2, T0 + timedelta(seconds=1))
    [second] = portal.flush(T0 + timedelta(seconds=10))
    assert second.reads == 1 and second.first_seen == T0 + timedelta(seconds=3.5)


def test_a_read_exactly_at_the_window_joins_the_pass() -> None:
    portal = Portal(2.0, SIDES)
    assert run(portal, read(0, 1), read(2, 2)) == []
    assert len(portal.flush(T0 + timedelta(seconds=5))) == 1


def test_reads_of_other_tags_on_the_same_device_close_quiet_passes() -> None:
    portal = Portal(1.0, SIDES)
    run(portal, read(0, 1, epc="AAAA"), read(0.5, 2, epc="AAAA"))
    [done] = portal.feed(read(5, 1, epc="BBBB"))
    assert done.epc == "AAAA"
    assert len(portal) == 1


def test_devices_do_not_close_each_others_passes() -> None:
    portal = Portal(1.0, SIDES)
    portal.feed(read(0, 1, device="gate-01"))
    assert portal.feed(read(60, 1, device="gate-02")) == []  # gate-02's clock is not gate-01's
    assert [p.device_id for p in portal.flush(T0 + timedelta(seconds=120))] == ["gate-01", "gate-02"]


def test_a_redelivered_read_is_not_counted_twice() -> None:
    portal = Portal(2.0, SIDES)
    first = read(0, 1)
    run(portal, first, first, read(0.5, 2))
    [passage] = portal.flush(T0 + timedelta(minutes=1))
    assert passage.reads == 2


def test_late_reads_inside_the_pass_still_decide_the_direction() -> None:
    portal = Portal(2.0, SIDES)
    run(portal, read(1.0, 2), read(0.5, 1))  # the outside read arrives second but happened first
    [passage] = portal.flush(T0 + timedelta(minutes=1))
    assert (passage.direction, passage.first_seen) == ("in", T0 + timedelta(seconds=0.5))


def test_flush_forgets_emitted_passages() -> None:
    portal = Portal(2.0, SIDES)
    run(portal, read(0, 1, epc="AAAA"), read(0, 1, epc="BBBB"))
    assert len(portal) == 2
    assert len(portal.flush(T0 + timedelta(minutes=1))) == 2
    assert len(portal) == 0 and portal.flush(T0 + timedelta(hours=1)) == []


@pytest.mark.parametrize("debounce", [0, -1.0, float("nan")])
def test_debounce_must_be_positive(debounce: float) -> None:
    with pytest.raises(ValueError, match="debounce_s"):
        Portal(debounce, SIDES)


reads_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=400),  # time step in tenths of a second
        st.sampled_from(["AAAA", "BBBB", "CCCC"]),
        st.sampled_from([1, 2, 3, 9, None]),
        st.sampled_from(["gate-01", "gate-02"]),
        st.booleans(),  # flush before this read
    ),
    max_size=60,
)


@given(steps=reads_strategy, debounce=st.sampled_from([0.5, 1.0, 2.0, 7.5]))
def test_never_two_passages_for_reads_within_the_debounce_window(
    steps: list[tuple[int, str, int | None, str, bool]], debounce: float
) -> None:
    portal = Portal(debounce, SIDES)
    emitted: list[Passage] = []
    fed: list[TagRead] = []
    clock = T0
    for step, epc, antenna, device, flush_first in steps:
        clock += timedelta(seconds=step / 10)
        if flush_first:
            emitted.extend(portal.flush(clock))
        r = TagRead(device, clock, f"{device}:{len(fed)}", epc, antenna)
        fed.append(r)
        emitted.extend(portal.feed(r))
    emitted.extend(portal.flush(clock + timedelta(seconds=debounce + 1)))

    assert len(portal) == 0  # bounded: nothing left once everything is quiet
    # every read is in exactly one passage
    keys = [k for p in emitted for k in p.event_keys]
    assert sorted(keys) == sorted(r.event_key for r in fed)
    assert sum(p.reads for p in emitted) == len(fed)
    # passages of one tag on one gate are separated by more than the window
    window = timedelta(seconds=debounce)
    by_tag: dict[tuple[str, str], list[Passage]] = {}
    for p in emitted:
        by_tag.setdefault((p.device_id, p.epc), []).append(p)
    for passages in by_tag.values():
        passages.sort(key=lambda p: p.first_seen)
        for before, after in itertools.pairwise(passages):
            assert after.first_seen - before.last_seen > window
    # and within one passage no gap exceeds the window
    at = {r.event_key: r.at for r in fed}
    for p in emitted:
        times = sorted(at[k] for k in p.event_keys)
        assert all(b - a <= window for a, b in itertools.pairwise(times))
        assert (times[0], times[-1]) == (p.first_seen, p.last_seen)
