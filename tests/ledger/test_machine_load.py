"""The benches' CPU census (ledger/machine_load.py), against real processes on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from ledger.machine_load import CpuShare, MachineLoad, by_name

SPIN = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"
SLEEP = "import time\ntime.sleep(60)\n"


def _start(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_busy_process_uses_a_core_and_an_idle_one_none() -> None:
    spinner, sleeper = _start(SPIN), _start(SLEEP)
    try:
        census = MachineLoad(
            by_name({spinner.pid: "spinner", sleeper.pid: "sleeper"}, {}), ["spinner", "sleeper", "absent"]
        )
        time.sleep(0.3)  # both started
        census.start()
        time.sleep(1.0)
        share = census.stop()
    finally:
        spinner.kill()
        sleeper.kill()
        spinner.wait()
        sleeper.wait()
    # used + waited is the spinner's whole window (it is always ready to run), whatever else
    # this 2-core machine does meanwhile; what it used alone depends on that.
    assert share.groups["spinner"] > 0.3
    if share.waits:
        assert share.groups["spinner"] + share.waits["spinner"] == pytest.approx(1.0, abs=0.15)
    assert share.groups["sleeper"] < 0.05
    assert share.groups["absent"] == 0.0
    assert 0.3 < share.busy <= share.cpus + 0.05
    assert share.other >= 0.0
    line = share.line()
    assert line.startswith(f"{share.busy:.2f} of {share.cpus} cores busy")
    assert "spinner" in line and "sleeper" in line and "other" in line


def test_a_process_started_inside_the_window_counts_whole() -> None:
    census = MachineLoad(by_name({}, {}), [])
    census.start()
    spinner = _start(SPIN)
    try:
        time.sleep(0.8)
        census.classify = by_name({spinner.pid: "late"}, {})
        census.order = ["late"]
        share = census.stop()
    finally:
        spinner.kill()
        spinner.wait()
    assert share.groups["late"] > 0.2  # its CPU since it started, not a difference from nothing


def test_groups_by_process_name() -> None:
    name = psutil.Process(os.getpid()).name()  # this interpreter's, e.g. python3.11
    census = MachineLoad(by_name({}, {name: "python"}), ["python"])
    census.start()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # this process spins meanwhile
        pass
    share = census.stop()
    assert share.groups["python"] > 0.1


def test_the_mean_of_slices() -> None:
    a = CpuShare(2, 1.0, {"x": 0.5}, {"x": 0.1})
    b = CpuShare(2, 2.0, {"x": 1.0}, {"x": 0.3})
    m = CpuShare.mean([a, b])
    assert (m.busy, m.groups, m.waits) == (1.5, {"x": 0.75}, {"x": pytest.approx(0.2)})
    assert CpuShare.mean([a, CpuShare(2, 1.0, {"x": 0.5})]).waits == {}  # one slice could not tell
    with pytest.raises(ValueError):
        CpuShare.mean([])
