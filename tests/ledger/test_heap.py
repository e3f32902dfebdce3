"""ledger/heap.py: after the freeze the collector no longer walks what startup built, and
collects its young generation every 10,000 objects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ledger.heap import freeze_startup_heap

PROGRAM = """
import gc
from api.main import create_app
from ledger.heap import freeze_startup_heap
create_app(None)  # the routes, models and metadata a served process holds
before = len(gc.get_objects())
_, middle, old = gc.get_threshold()
frozen = freeze_startup_heap()
after = len(gc.get_objects())
print(before, frozen, after, *gc.get_threshold(), middle, old)
"""


def test_the_objects_alive_after_startup_are_frozen_out_of_collections() -> None:
    run = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    before, frozen, after, *_threshold = map(int, run.stdout.split())
    assert before > 50_000  # a FastAPI + SQLAlchemy process: the heap worth freezing
    assert frozen >= before * 0.9
    assert after < before * 0.05, (before, after)  # what a full collection still walks


def test_the_young_generation_is_collected_every_ten_thousand_objects() -> None:
    """What a request builds dies before a collection meets it (the older generations keep
    the interpreter's own thresholds)."""
    run = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    *_, young, middle, old, middle_before, old_before = map(int, run.stdout.split())
    assert young == 10_000
    assert (middle, old) == (middle_before, old_before)


def test_a_young_generation_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        freeze_startup_heap(young=0)
