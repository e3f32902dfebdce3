"""Group commit of drawdowns and repayments: concurrent money requests share one transaction.

Each request alone costs a transaction of four round trips (BEGIN; claim, lock and read; book;
COMMIT); under load those round trips, not the money logic, were what the API and PostgreSQL
spent their time on (docs/scaling.md). The desk queues requests and runs them in batches: one
transaction claims every key, locks every facility of the batch in facility order, reads them,
decides each request in memory (the pure rules of ledger/credit.py, through `MoneyOrder.decide`),
and books everything in one statement.

- An idle desk runs a request at once, in a batch of one: no timer, no added wait. Under load,
  requests that arrive while `max_batches` batches are running wait and then leave together,
  up to `max_orders` per batch.
- `min_orders_busy`: while a batch runs, another starts only once that many requests wait (the
  running batch, when it ends, takes whatever waits). A batch costs the API ~0.5 ms of CPU
  whatever its size (a pooled connection, BEGIN, two statements, COMMIT); with every free slot
  taking the next request at once, half the batches under `pledge bench drawdown` held ONE
  request beside a few of ~50 (docs/scaling.md). 1 (the default here) is that old behaviour;
  the API's setting is 16 (PLEDGE_MONEY_BATCH_MIN_BUSY).
- Requests for one facility are decided in arrival order. Several may share a batch: each sees
  the state the ones before it left (`MoneyWrites.applied_to`), and their writes are booked as
  one (`MoneyWrites.then`). A facility in a running batch waits for that batch to finish.
- A batch holds at most one request per Idempotency-Key; a duplicate waits for the next batch,
  where it gets the stored answer.
- Refusals, replays and keys in flight are per request: one request's refusal changes nothing
  for the others in its batch.
- If the batch itself fails before its commit (a posting key booked twice, a deadlock with
  another process, a bug in one request), nothing of it was written; each request is then run
  again alone, so that each gets its own answer or error. A failed COMMIT is not retried (it
  may have landed): every request of the batch gets the error.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ledger.store.port import (
    LedgerStore,
    MoneyAsk,
    MoneyState,
    MoneyWrites,
    RequestKey,
    RequestKeyInFlight,
    RequestKeyReused,
    StoredResponse,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one request of a batch comes to: its outcome (or error), and what it writes.

    `writes` None: nothing booked (a refusal); `answer`: the response stored under the request's
    key (a refusal's too); `error`: raised to the caller instead of returning `outcome`.
    """

    outcome: Any
    writes: MoneyWrites | None = None
    answer: StoredResponse | None = None
    error: Exception | None = None


class MoneyOrder(Protocol):
    """One money request, as the desk sees it (ledger/credit.py makes them)."""

    @property
    def facility_id(self) -> str: ...

    @property
    def key(self) -> RequestKey | None:
        """The request's Idempotency-Key (None: an unkeyed request)."""

    def aged_before(self, now: datetime) -> datetime:
        """The facility's cutoff for aged lots at `now`."""

    def decide(self, money: MoneyState | None, now: datetime) -> Decision:
        """Decide the request from the facility's locked state (None: no credit line); no I/O."""

    def replay(self, stored: StoredResponse) -> Any:
        """The outcome of a request whose key was already answered."""


@dataclass(eq=False, slots=True)
class _Waiting:
    order: MoneyOrder
    future: asyncio.Future[Any]


@dataclass(eq=False)
class _Queue:
    """The desk's state on one event loop."""

    waiting: deque[_Waiting] = field(default_factory=deque)
    busy: set[str] = field(default_factory=set)  # facilities in a running batch
    running: set[asyncio.Task[None]] = field(default_factory=set)


class MoneyDesk:
    def __init__(
        self,
        store: LedgerStore,
        clock: Callable[[], datetime],
        *,
        max_batches: int = 4,
        max_orders: int = 64,
        min_orders_busy: int = 1,
    ) -> None:
        if max_batches < 1 or max_orders < 1 or min_orders_busy < 1:
            raise ValueError("max_batches, max_orders and min_orders_busy must be at least 1")
        self.store = store
        self.clock = clock
        self.max_batches = max_batches
        self.max_orders = max_orders
        self.min_orders_busy = min(min_orders_busy, max_orders)
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )
        self.batches = 0  # batches committed, and the requests in them (tests, diagnostics)
        self.batched = 0
        self.retried = 0  # batches that failed before COMMIT and were run again request by request

    async def run(self, order: MoneyOrder) -> Any:
        """Run `order` in the next batch that can take it; its outcome, or its error raised."""
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            q = self._queues[loop] = _Queue()
        waiting = _Waiting(order, loop.create_future())
        q.waiting.append(waiting)
        self._start(q)
        return await waiting.future

    def _start(self, q: _Queue) -> None:
        """Start batches while there is room and work no running batch holds up."""
        while len(q.running) < self.max_batches and q.waiting:
            if q.running and len(q.waiting) < self.min_orders_busy:
                return  # a running batch will call again when it ends
            batch = self._take(q)
            if not batch:
                return
            task = asyncio.get_running_loop().create_task(self._batch(q, batch))
            q.running.add(task)

    def _take(self, q: _Queue) -> list[_Waiting]:
        """The oldest requests that can go together: not for a facility a running batch holds,
        one per key, in arrival order per facility (a facility with one held back is skipped)."""
        batch: list[_Waiting] = []
        keys: set[tuple[str, str]] = set()
        held = set(q.busy)
        rest: deque[_Waiting] = deque()
        while q.waiting:
            w = q.waiting.popleft()
            fid, key = w.order.facility_id, w.order.key
            ident = None if key is None else (key.scope, key.key)
            if w.future.done():  # its caller went away before it started: drop it
                continue
            if len(batch) >= self.max_orders or fid in held or (ident is not None and ident in keys):
                held.add(fid)
                rest.append(w)
                continue
            batch.append(w)
            if ident is not None:
                keys.add(ident)
        q.waiting = rest
        q.busy.update(w.order.facility_id for w in batch)
        return batch

    async def _batch(self, q: _Queue, batch: list[_Waiting]) -> None:
        try:
            try:
                results = await self._attempt(batch)
            except _BeforeCommit as e:
                if len(batch) == 1:
                    raise
                self.retried += 1
                log.warning(
                    "money batch of %d failed before commit (%r); running each alone", len(batch), e.__cause__
                )
                results = [await self._alone(w) for w in batch]
            for w, (ok, value) in zip(batch, results, strict=True):
                _settle(w.future, ok, value)
        except BaseException as e:
            error = e.__cause__ if isinstance(e, _BeforeCommit) else e
            for w in batch:
                if w.future.done():
                    continue
                if isinstance(e, Exception):
                    w.future.set_exception(error or e)
                else:  # the desk itself was cancelled (shutdown): so are its waiters
                    w.future.cancel()
            if not isinstance(e, Exception):
                raise
        finally:
            q.busy.difference_update(w.order.facility_id for w in batch)
            q.running.discard(asyncio.current_task())
            self._start(q)

    async def _alone(self, w: _Waiting) -> tuple[bool, Any]:
        try:
            return (await self._attempt([w]))[0]
        except _BeforeCommit as e:
            return False, e.__cause__
        except Exception as e:
            return False, e

    async def _attempt(self, batch: list[_Waiting]) -> list[tuple[bool, Any]]:
        """One transaction for the batch: (True, outcome) or (False, error) per request.
        Raises _BeforeCommit (with the cause) when it failed before COMMIT: nothing written."""
        now = self.clock()
        orders = [w.order for w in batch]
        committing = False
        try:
            async with self.store.money_batch() as tx:
                try:
                    asks = [MoneyAsk(o.facility_id, o.aged_before(now), o.key) for o in orders]
                    opened = await tx.open(asks, now)
                    results, writes, answers = _decide(orders, opened, now)
                    await tx.book(list(writes.values()), answers)
                except Exception as e:
                    raise _BeforeCommit() from e
                committing = True
        except _BeforeCommit:
            raise
        except Exception as e:
            if not committing:  # failed on the way in (no connection): nothing was written
                raise _BeforeCommit() from e
            raise
        self.batches += 1
        self.batched += len(batch)
        return results


class _BeforeCommit(Exception):
    """The batch failed before its COMMIT: nothing of it was written (the cause says why)."""


def _decide(
    orders: list[MoneyOrder], opened: list[Any], now: datetime
) -> tuple[list[tuple[bool, Any]], dict[str, MoneyWrites], list[tuple[RequestKey, StoredResponse]]]:
    """Decide each request in arrival order on its facility's state as the ones before left it."""
    results: list[tuple[bool, Any]] = []
    writes: dict[str, MoneyWrites] = {}
    answers: list[tuple[RequestKey, StoredResponse]] = []
    states: dict[str, MoneyState | None] = {}
    for order, o in zip(orders, opened, strict=True):
        if isinstance(o, RequestKeyInFlight | RequestKeyReused):
            results.append((False, o))
            continue
        if o.replay is not None:
            results.append((True, order.replay(o.replay)))
            continue
        fid = order.facility_id
        money = states.get(fid, o.money)
        d = order.decide(money, now)
        if d.writes is not None:
            assert money is not None
            states[fid] = d.writes.applied_to(money)
            writes[fid] = writes[fid].then(d.writes) if fid in writes else d.writes
        else:
            states[fid] = money
        if d.answer is not None and order.key is not None:
            answers.append((order.key, d.answer))
        results.append((False, d.error) if d.error is not None else (True, d.outcome))
    return results, writes, answers


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller was cancelled: the outcome stands, nobody reads it
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


__all__ = ["Decision", "MoneyDesk", "MoneyOrder"]
