"""`pledge bench ingest` end to end with tiny numbers: every phase runs against the real
Mosquitto and PostgreSQL, nothing is lost or dead-lettered, and the last line carries the
figures in the agreed form. Slow (gateway processes start four times): run with `-m slow`."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from tests.conftest import PG_URL, service_unavailable

SUMMARY = re.compile(
    r"ingest_ratio=(?P<ingest>\S+) events_per_s=(?P<rate>\d+) p99_ms=(?P<p99>\S+) "
    r"scale2_ratio=(?P<scale2>\S+) growth_ratio=(?P<growth>\S+) peak_rss_mb=(?P<rss>\d+)")


async def _postgres_reachable() -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        service_unavailable("PostgreSQL", e)
        return
    await conn.close()


@pytest.mark.slow
async def test_the_ingest_benchmark_runs_every_phase_and_prints_its_figures(mqtt_url: str) -> None:
    await _postgres_reachable()
    run = subprocess.run(
        [sys.executable, "-m", "api.cli", "bench", "ingest", "--bare-seconds", "1",
         "--rate-seconds", "1.5", "--latency-seconds", "1.5", "--latency-rate", "200",
         "--history", "2000", "--devices", "2", "--publishers", "1", "--warmup-seconds", "0.5",
         "--database-url", PG_URL, "--mqtt-url", mqtt_url],
        capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    for phase in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        assert any(line.startswith(phase) for line in lines), run.stdout
    assert "dead letters 0; lost 0" in run.stdout, run.stdout
    found = SUMMARY.fullmatch(lines[-1])
    assert found, lines[-1]
    figures = {k: float(v) for k, v in found.groupdict().items()}
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
    assert 20 < figures["rss"] < 2000  # MB: a real VmHWM, not a unit slip
