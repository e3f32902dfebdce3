"""Where a benchmark phase's CPU went: the machine's busy cores, split by process group.

The benches (`pledge bench ingest`, `pledge bench drawdown`) run the system under test, its
PostgreSQL, its broker and their own load generator on one machine. A ratio such as "two
gateways / one gateway" means something only if the machine had cores to spare; this reading
says whether it had. `start()` and `stop()` bracket the measured window; `stop()` returns a
`CpuShare`: the machine's busy cores over the window (all CPUs, from /proc/stat through psutil)
and, per group, the cores its processes used (user + system CPU seconds / wall seconds) and,
where Linux tells it (/proc/<pid>/task/<tid>/schedstat), how long its threads were ready to
run but waited for a core, in the same unit: 0.20 means a fifth of the window spent queued
for a CPU. A process that uses 0.8 of a core and waits 0.2 wanted the whole core.

Groups come from a classifier the bench passes in: a process -> group name, or None for
"other". A process that starts inside the window counts whole; one that ends inside it is not
counted (its CPU falls to "other", which is busy minus the named groups).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["CpuShare", "MachineLoad", "by_name"]

Classifier = Callable[[psutil.Process], str | None]


@dataclass(frozen=True)
class CpuShare:
    """Busy cores of the machine over a window, and the cores each group used."""

    cpus: int
    busy: float
    groups: dict[str, float]
    waits: dict[str, float] = field(default_factory=dict)  # ready but queued for a core

    @property
    def other(self) -> float:
        return max(0.0, self.busy - sum(self.groups.values()))

    @staticmethod
    def mean(shares: list[CpuShare]) -> CpuShare:
        """The average of readings over windows of equal length (a phase measured in slices)."""
        n = len(shares)
        if n == 0:
            raise ValueError("no readings to average")
        groups = {g: sum(s.groups.get(g, 0.0) for s in shares) / n for g in shares[0].groups}
        known = all(s.waits for s in shares)
        waits = {g: sum(s.waits.get(g, 0.0) for s in shares) / n for g in shares[0].groups} if known else {}
        return CpuShare(shares[0].cpus, sum(s.busy for s in shares) / n, groups, waits)

    def line(self) -> str:
        """'1.58 of 2 cores busy; cores used+waited: gateways 0.79+0.17, ...; other 0.02'."""
        if self.waits:
            head = "cores used+waited"
            parts = [f"{n} {c:.2f}+{self.waits.get(n, 0.0):.2f}" for n, c in self.groups.items()]
        else:
            head = "cores used"
            parts = [f"{n} {c:.2f}" for n, c in self.groups.items()]
        busy = f"{self.busy:.2f} of {self.cpus} cores busy"
        return f"{busy}; {head}: {', '.join(parts)}; other {self.other:.2f}"


def by_name(pids: dict[int, str], names: dict[str, str]) -> Classifier:
    """A classifier: these pids as these groups first, then process names (e.g. 'postgres')."""

    def classify(p: psutil.Process) -> str | None:
        if p.pid in pids:
            return pids[p.pid]
        try:
            return names.get(p.name())
        except psutil.Error:
            return None

    return classify


class MachineLoad:
    def __init__(self, classify: Classifier, order: list[str]) -> None:
        """`order`: the groups to report, in this order (a group seen but not listed is other)."""
        self.classify = classify
        self.order = order
        self._t0 = 0.0
        self._busy0 = 0.0
        self._cpu0: dict[int, float] = {}
        self._wait0: dict[int, float | None] = {}

    def start(self) -> None:
        self._t0, self._busy0, self._cpu0 = time.monotonic(), _busy(), _process_cpu()
        self._wait0 = {pid: _queued_s(pid) for pid in self._cpu0}

    def stop(self) -> CpuShare:
        wall = max(time.monotonic() - self._t0, 1e-9)
        busy = (_busy() - self._busy0) / wall
        used: dict[str, float] = dict.fromkeys(self.order, 0.0)
        waits: dict[str, float] = {}
        known = True  # every process of a group told its queued time
        for pid, total in _process_cpu().items():
            try:
                group = self.classify(psutil.Process(pid))
            except psutil.Error:
                continue
            if group not in used:
                continue
            used[group] += (total - self._cpu0.get(pid, 0.0)) / wall  # new in the window: all of it
            queued, before = _queued_s(pid), self._wait0.get(pid, 0.0)
            if queued is None or before is None:
                known = False
            else:
                waits[group] = waits.get(group, 0.0) + (queued - before) / wall
        return CpuShare(os.cpu_count() or 1, busy, used, waits if known else {})


def _busy() -> float:
    """CPU seconds the machine spent running something (guest time is inside user and nice;
    idle, iowait and steal are not running)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _process_cpu() -> dict[int, float]:
    out: dict[int, float] = {}
    for p in psutil.process_iter(["cpu_times"]):
        t = p.info["cpu_times"]
        if t is not None:
            out[p.pid] = t.user + t.system
    return out


def _queued_s(pid: int) -> float | None:
    """Seconds the process's threads spent ready to run but waiting for a CPU (Linux
    schedstat, second field, nanoseconds); None where the kernel does not tell."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9

