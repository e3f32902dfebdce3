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


def test_the_latency_cursor_sees_a_batch_that_commits_after_a_later_one() -> None:
    """(c) polls `tag_read` by id; with pipelined commits, ids 1-3 can become visible after
    4-6. Every row is counted exactly once, and a gap that no commit fills is passed after
    `gap_s`, not waited on forever."""
    from gateway.bench import _Cursor

    def rows(*ids: int) -> list[dict[str, int]]:
        return [{"read_id": i} for i in ids]

    cursor = _Cursor(0, gap_s=2.0)
    assert [r["read_id"] for r in cursor.new(rows(4, 5, 6), now=10.0)] == [4, 5, 6]
    assert cursor.below == 0  # 1-3 may still commit
    assert [r["read_id"] for r in cursor.new(rows(1, 2, 3, 4, 5, 6, 7), now=10.5)] == [1, 2, 3, 7]
    assert cursor.below == 7
    assert [r["read_id"] for r in cursor.new(rows(9, 10), now=11.0)] == [9, 10]
    assert cursor.below == 7  # 8 is missing: held until gap_s passed
    assert cursor.new(rows(9, 10), now=12.0) == []
    assert cursor.new(rows(9, 10), now=13.5) == []
    assert cursor.below == 10  # 8 given up (a rolled-back insert), 9 and 10 passed
    assert [r["read_id"] for r in cursor.new(rows(11), now=13.6)] == [11]


class _CommittedReads:
    """The two queries `_Progress` makes, over a set of committed `tag_read` ids."""

    def __init__(self) -> None:
        self.ids: set[int] = set()

    async def counts_above(self, read_id: int, mark: int) -> tuple[int, int, int]:
        above = [i for i in self.ids if i > read_id]
        return sum(1 for i in above if i <= mark), len(above), max(above, default=read_id)

    async def reads_between(self, low: int, high: int) -> int:
        return sum(1 for i in self.ids if low < i <= high)


async def test_flow_control_progress_never_counts_more_than_committed() -> None:
    """Two pipelined batches take interleaved ids (odd: A, even: B) and B commits first: the
    top id then says 12 rows are done while 6 are. The publisher's progress must not run ahead
    (it would overshoot the broker's queue), and must catch up once A commits, also when A
    commits below a watermark that already moved past its ids."""
    from gateway.bench import _Progress

    for settle_s in (0.0, 3600.0):  # watermark moving at every poll / never
        db = _CommittedReads()
        progress = _Progress(db, base=0, settle_s=settle_s, recount_s=3600.0)  # type: ignore[arg-type]
        assert await progress() == 0
        db.ids |= {2, 4, 6, 8, 10, 12}  # B committed
        assert await progress() == 6
        assert await progress() == 6  # settle_s 0: the watermark is now past A's ids
        db.ids |= {1, 3, 5, 7, 9, 11}  # A committed
        seen = await progress()
        assert 6 <= seen <= 12
        progress._recount_at = 0.0  # the periodic recount is due
        assert await progress() == 12
        db.ids |= {13, 14}
        assert await progress() == 14


def test_the_default_window_follows_the_receive_maximum() -> None:
    """Window + the gateway's committed-unacknowledged batches must stay below Receive Maximum
    + Mosquitto's queue (1,000), or the broker drops: the default leaves 1,000 of room."""
    from gateway.bench import IngestBenchOptions

    assert IngestBenchOptions().effective_window == IngestBenchOptions().receive_maximum - 1000
    assert IngestBenchOptions(receive_maximum=2000).effective_window == 1000
    assert IngestBenchOptions(receive_maximum=500).effective_window == 1
    assert IngestBenchOptions(receive_maximum=2000, window=300).effective_window == 300
