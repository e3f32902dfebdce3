"""`pledge bench drawdown` end to end with tiny numbers, against the real PostgreSQL: every
phase runs, the race overdraws nothing, every money request is answered 201, and the last line
carries the figures in the agreed form. Slow (two API servers start): run with `-m slow`."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from tests.conftest import PG_URL
from tests.gateway.test_ingest_bench import _postgres_reachable

SUMMARY = re.compile(
    r"drawdown_ratio=(?P<ratio>\S+) rps=(?P<rps>\d+) p99_ms=(?P<p99>\S+) "
    r"overdraw=(?P<overdraw>\S+) growth_ratio=(?P<growth>\S+) peak_rss_mb=(?P<rss>\d+)"
)

STATUSES = re.compile(r"\{(\d+: \d+(?:, \d+: \d+)*)\}")  # a phase's {status: count, ...}


@pytest.mark.slow
async def test_the_drawdown_benchmark_runs_every_phase_and_prints_its_figures() -> None:
    await _postgres_reachable()
    run = subprocess.run(
        [sys.executable, "-m", "api.cli", "bench", "drawdown", "--seconds", "1.5", "--postings", "2000",
         "--rounds", "1", "--database-url", PG_URL],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    for phase in ("(a)", "(b)", "(c)", "(d)"):
        assert any(line.startswith(phase) for line in lines), run.stdout
    assert "the same on an empty journal" in run.stdout
    flat = " ".join(run.stdout.split())  # rich wraps long lines, a status dict too
    statuses = {int(code) for found in STATUSES.findall(flat) for code in re.findall(r"(\d+):", found)}
    assert statuses == {200, 201}, run.stdout  # health 200, money 201: no refusal, no error
    found = SUMMARY.fullmatch(lines[-1])
    assert found, lines[-1]
    assert found["overdraw"] == "0"
    figures = {k: float(v) for k, v in found.groupdict().items() if k != "overdraw"}
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
    assert 20 < figures["rss"] < 2000  # MB: a real VmHWM, not a unit slip
