"""The garbage collector in our long-running processes: what startup built is not garbage, and
what a request builds dies young.

CPython's collector of reference cycles scans, in its oldest generation, every container object
alive. A built API process holds ~150,000 of them before it serves a request (modules, FastAPI's
routes and models, SQLAlchemy's metadata and compiled caches) and each full collection walked
them all: ~70 ms (up to 92) with the event loop stopped, every 1.5-2 s under load, so that every
request in flight waited for it. That was the p99 of `pledge bench drawdown`: p50 37 ms, p99
~130 ms. `gc.freeze()` moves what is alive after startup into a permanent generation the
collector no longer scans (what startup built lives as long as the process anyway): full
collections then take ~3 ms, and the money requests' p99 fell to 59-80 ms against 112-125
without (docs/scaling.md). The gateway, with fewer objects, gained ~7 % of its ingest rate.

The young generation then holds `YOUNG_GENERATION` objects (CPython's default: 700). With 64
requests in flight, a collection every 700 new containers caught each request's coroutines,
frames, dicts and dataclasses alive, over and over, and promoted them to generation 1, whose
collections scanned them again: timed with `gc.callbacks` in the API under money requests,
7,271 young collections took 1.19 s and 660 of generation 1 took 1.10 s, ~10 % of the API's
CPU; with 10,000, 318 and 28 collections took 47 and 31 ms. Six side-by-side pairs of money
requests (two API servers, slices alternating): +4 to +20 % requests/s, 4-17 % less API CPU per
request (docs/scaling.md); health checks unchanged; the gateway 40-43 against 52 us per event.

The benches' load generators call it too, before they measure: a bench process holds SQLAlchemy,
FastAPI and paho (~100,000 objects), each of its full collections took 37-63 ms here with every
client of the bench stalled, and that stall was counted as the server's latency.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_GENERATION", "freeze_startup_heap"]

YOUNG_GENERATION = 10_000  # objects allocated (net) between two young collections


def freeze_startup_heap(young: int = YOUNG_GENERATION) -> int:
    """Collect what startup left as garbage, then exempt every surviving object from later
    collections, and collect the young generation every `young` new objects (the older
    generations keep the interpreter's own thresholds: 10 and 10 in CPython 3.11). Call once
    the process is built (platform, app), before it starts serving. Returns how many objects
    were frozen."""
    if young < 1:
        raise ValueError("young must be at least 1")
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
    return gc.get_freeze_count()
