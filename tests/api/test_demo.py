"""`make demo` runs `pledge demo`: it must work on embedded defaults and show real figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end_on_embedded_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEDGE_")}
    env["PLEDGE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "demo", "--duration", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = " ".join(done.stdout.split())  # rich wraps long lines
    assert "embedded amqtt" in out
    assert "booked receipts" in out and "Borrowing base certificate" in out
    assert "authorised release" in out and "removal without release" in out
    assert "bad_signature" in out
    assert "journal hash chain OK" in out and "agree" in out
    assert "demo finished" in out
