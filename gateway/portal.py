"""RFID gate logic: many reads of one tag passing a door become one `Passage` with a direction.

A tag crossing a dock door is read dozens of times by the antennas on both sides. The portal
groups the reads of one EPC by one device into a pass: a read joins the open pass when it is
at most `debounce_s` after that pass's latest read. A pass is emitted once it has been quiet
for more than `debounce_s` - on `flush(now)`, or on a later `feed` from the same device, whose
read time then serves as the clock (devices' clocks are never compared with each other).

Direction, in order of precedence:

1. the reader's own verdict: the direction of the latest read that carries one;
2. otherwise the side that saw the tag first: outside first -> "in" (entering the
   warehouse), inside first -> "out";
3. otherwise None: only one side saw it, the antennas are not mapped, or a tie.

Time is an input (read times and `now`); the portal never reads a clock. Emitted passes are
forgotten, so memory holds only tags in the doorway. Reads are expected in time order per
device (as a reader publishes them); a read older than an already-emitted pass starts a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.device import AntennaSide
from gateway.observation import Direction, TagRead

__all__ = ["Passage", "Portal"]


@dataclass(frozen=True, slots=True)
class Passage:
    """One tag passing one gate: `reads` distinct reads between `first_seen` and `last_seen`
    (UTC), whose event keys are `event_keys` in arrival order."""

    device_id: str
    epc: str
    direction: Direction | None
    first_seen: datetime
    last_seen: datetime
    reads: int
    event_keys: tuple[str, ...]


@dataclass(slots=True)
class _Pass:
    first_seen: datetime
    last_seen: datetime
    event_keys: dict[str, None] = field(default_factory=dict)  # ordered set
    side_first: dict[AntennaSide, datetime] = field(default_factory=dict)
    verdict: Direction | None = None
    verdict_at: datetime | None = None

    def add(self, read: TagRead, side: AntennaSide | None) -> None:
        if read.event_key in self.event_keys:
            return  # a redelivered read is not one more read
        self.event_keys[read.event_key] = None
        self.first_seen = min(self.first_seen, read.at)
        self.last_seen = max(self.last_seen, read.at)
        if side is not None and (side not in self.side_first or read.at < self.side_first[side]):
            self.side_first[side] = read.at
        if read.direction is not None and (self.verdict_at is None or read.at >= self.verdict_at):
            self.verdict, self.verdict_at = read.direction, read.at

    def direction(self) -> Direction | None:
        if self.verdict is not None:
            return self.verdict
        outside, inside = self.side_first.get("outside"), self.side_first.get("inside")
        if outside is None or inside is None or outside == inside:
            return None
        return "in" if outside < inside else "out"


class Portal:
    """Debounces tag reads into passages and infers their direction (see module doc).

    `debounce_s` (seconds, > 0) is the longest gap between two reads of one pass.
    `antenna_sides` maps antenna ports to the side of the door they face.
    """

    def __init__(self, debounce_s: float, antenna_sides: Mapping[int, AntennaSide]) -> None:
        if not debounce_s > 0:
            raise ValueError(f"debounce_s must be positive, got {debounce_s!r}")
        self._window = timedelta(seconds=debounce_s)
        self._sides = dict(antenna_sides)
        self._open: dict[str, dict[str, _Pass]] = {}  # device_id -> epc -> pass

    def __len__(self) -> int:
        """How many passes are open (tags still in the doorway)."""
        return sum(len(passes) for passes in self._open.values())

    def feed(self, read: TagRead) -> list[Passage]:
        """Add one read; return the passes of its device that this read proves finished."""
        passes = self._open.setdefault(read.device_id, {})
        done = self._close(read.device_id, passes, read.at, keep=read.epc)
        current = passes.get(read.epc)
        if current is not None and read.at - current.last_seen > self._window:
            done.append(self._emit(read.device_id, read.epc, passes.pop(read.epc)))
            current = None
        if current is None:
            current = passes[read.epc] = _Pass(first_seen=read.at, last_seen=read.at)
        current.add(read, self._sides.get(read.antenna) if read.antenna is not None else None)
        return _ordered(done)

    def flush(self, now: datetime) -> list[Passage]:
        """Emit every pass quiet for more than debounce_s at `now` (all of them when `now`
        is far enough ahead, e.g. at shutdown)."""
        done: list[Passage] = []
        for device_id in list(self._open):
            done.extend(self._close(device_id, self._open[device_id], now, keep=None))
        return _ordered(done)

    def _close(
        self, device_id: str, passes: dict[str, _Pass], now: datetime, keep: str | None
    ) -> list[Passage]:
        quiet = [epc for epc, p in passes.items() if epc != keep and now - p.last_seen > self._window]
        done = [self._emit(device_id, epc, passes.pop(epc)) for epc in quiet]
        if not passes and keep is None:
            del self._open[device_id]
        return done

    @staticmethod
    def _emit(device_id: str, epc: str, p: _Pass) -> Passage:
        return Passage(
            device_id=device_id,
            epc=epc,
            direction=p.direction(),
            first_seen=p.first_seen,
            last_seen=p.last_seen,
            reads=len(p.event_keys),
            event_keys=tuple(p.event_keys),
        )


def _ordered(passages: list[Passage]) -> list[Passage]:
    return sorted(passages, key=lambda p: (p.last_seen, p.device_id, p.epc))
