"""The ledger's storage port: what the service needs from a store, nothing about SQL.

`LedgerStore.transaction()` opens one atomic unit of work (`LedgerTx`); everything done through
it commits together or not at all. Adapters: `ledger.store.sql.PostgresStore` and
`ledger.store.sql.SqliteStore`; tests/ledger/test_store_contract.py runs one suite on both.
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from ledger.core.journal import JournalEntry
from ledger.core.lot import Lot
from ledger.core.posting import Posting
from ledger.core.price import PricePoint
from ledger.core.reference import Facility


@dataclass(frozen=True, slots=True)
class PositionRow:
    """Aggregates of one SKU in one facility (quantities in the SKU's uom)."""

    facility_id: str
    sku_id: str
    pledged_qty: Decimal
    eligible_qty: Decimal  # statically eligible: pledged, verified, financed, approved site
    price: Decimal | None
    price_at: datetime | None
    haircut: Decimal

    def values(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FacilityStateRow:
    facility_id: str
    borrowing_base: Decimal
    market_value: Decimal
    computed_at: datetime


@dataclass(frozen=True, slots=True)
class SkuMarket:
    """Latest price of a SKU and the daily volatility of its history (None: too short)."""

    sku_id: str
    price: Decimal
    price_at: datetime
    sigma: Decimal | None
    returns: int


@dataclass(frozen=True, slots=True)
class LotFilter:
    """Which lots, by lot id: each field None matches all; `after` is the keyset cursor (the
    last lot id of the page before), `limit` None is every match."""

    facility_id: str | None = None
    site_id: str | None = None
    zone_id: str | None = None
    sku_id: str | None = None
    lot_id: str | None = None
    status: str | None = None
    after: str | None = None
    limit: int | None = 100


@dataclass(frozen=True, slots=True)
class MovementFilter:
    facility_id: str
    lot_id: str | None = None
    kind: str | None = None
    site_id: str | None = None
    zone_id: str | None = None
    sku_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int | None = None  # keyset cursor
    limit: int = 100


class LedgerTx(abc.ABC):
    """One transaction on the ledger store."""

    @abc.abstractmethod
    async def insert_reference(self, obj: Any) -> None: ...
    @abc.abstractmethod
    async def get_reference(self, kind: type, ident: str, lock: bool = False) -> Any:
        """The site, zone, SKU or borrower `ident`, or None; `lock`: its row held (FOR UPDATE)
        until the transaction ends, so that work on it (a SKU's prices) runs one at a time."""
    @abc.abstractmethod
    async def list_reference(self, kind: type) -> list[Any]: ...
    @abc.abstractmethod
    async def insert_facility(self, f: Facility, created_at: datetime) -> None: ...
    @abc.abstractmethod
    async def get_facilities(self, ids: Iterable[str]) -> dict[str, Facility]: ...
    @abc.abstractmethod
    async def list_facility_ids(self) -> list[str]: ...
    @abc.abstractmethod
    async def facilities_with_sku(self, sku_id: str) -> list[str]: ...
    @abc.abstractmethod
    async def insert_lots(self, lots: Sequence[Lot]) -> None: ...
    @abc.abstractmethod
    async def lots_by_id(self, lot_ids: Iterable[str], *, lock: bool = False) -> dict[str, Lot]: ...
    @abc.abstractmethod
    async def lots_by_epc(self, epcs: Iterable[str]) -> dict[str, Lot]: ...
    @abc.abstractmethod
    async def update_lots(self, lots: Sequence[Lot]) -> None: ...
    @abc.abstractmethod
    async def lots_of_facility(self, facility_id: str) -> list[Lot]: ...
    @abc.abstractmethod
    async def query_lots(self, f: LotFilter) -> list[Lot]:
        """The lots as they are now."""
    @abc.abstractmethod
    async def lots_as_of(self, f: LotFilter, as_of: datetime) -> list[Lot]:
        """The lots of `f.facility_id` (required) as they stood at `as_of`: for each lot, the
        state its last journal entry (by seq) with `at <= as_of` left; then `f`'s filters."""
    @abc.abstractmethod
    async def pledges_by_epc(self, epcs: Iterable[str]) -> dict[str, str]: ...
    @abc.abstractmethod
    async def insert_pledges(self, lots: Sequence[Lot], at: datetime) -> None: ...
    @abc.abstractmethod
    async def delete_pledges(self, epcs: Sequence[str]) -> None: ...
    @abc.abstractmethod
    async def record_pledge_refusal(
        self, at: datetime, epc: str, lot_id: str | None, requested_by: str, pledged_to: str, detail: str
    ) -> None: ...
    @abc.abstractmethod
    async def pledge_refusals(self, epc: str | None = None) -> list[dict[str, Any]]: ...
    @abc.abstractmethod
    async def journal_head(self, facility_id: str) -> tuple[int, str] | None: ...
    @abc.abstractmethod
    async def lock_heads_of_lots(self, lot_ids: Iterable[str]) -> dict[str, tuple[int, str]]: ...
    @abc.abstractmethod
    async def lock_heads(self, facility_ids: Iterable[str]) -> dict[str, tuple[int, str]]: ...
    @abc.abstractmethod
    async def append_entries(self, entries: Sequence[JournalEntry]) -> None: ...
    @abc.abstractmethod
    def entries(
        self, facility_id: str, *, until: datetime | None = None, batch: int = 5000
    ) -> AsyncIterator[JournalEntry]: ...
    @abc.abstractmethod
    async def movements(self, f: MovementFilter) -> list[JournalEntry]: ...
    @abc.abstractmethod
    async def insert_price(self, p: PricePoint) -> None: ...
    @abc.abstractmethod
    async def price_history(self, sku_id: str, until: datetime | None, limit: int) -> list[PricePoint]: ...
    @abc.abstractmethod
    async def put_sku_market(self, m: SkuMarket) -> None: ...
    @abc.abstractmethod
    async def sku_markets(self, sku_ids: Iterable[str]) -> dict[str, SkuMarket]: ...
    @abc.abstractmethod
    async def insert_positions(self, rows: Sequence[PositionRow]) -> None: ...
    @abc.abstractmethod
    async def positions(self, facility_ids: Iterable[str]) -> list[PositionRow]: ...
    @abc.abstractmethod
    async def update_position_quantities(self, rows: Sequence[PositionRow]) -> None: ...
    @abc.abstractmethod
    async def update_position_prices(self, rows: Sequence[PositionRow]) -> None: ...
    @abc.abstractmethod
    async def aged_lots(self, cutoffs: dict[str, datetime]) -> list[Lot]: ...
    @abc.abstractmethod
    async def put_facility_states(self, rows: Sequence[FacilityStateRow]) -> None: ...
    @abc.abstractmethod
    async def facility_states(self, facility_ids: Iterable[str]) -> dict[str, FacilityStateRow]: ...
    @abc.abstractmethod
    async def count(self, table: str) -> int: ...


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A money request under an Idempotency-Key: who sent it (scope), the key, what it asked."""

    scope: str
    key: str
    fingerprint: str  # hash of method, path and body: the same key may not ask something else


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The answer given to a keyed request, stored with the money it moved (or its refusal).

    `encoded`: the body as JSON, when the caller already has it; the same text is stored and
    sent, so a fresh answer is encoded once (`json_bytes`)."""

    status_code: int
    body: Any
    encoded: bytes | None = field(default=None, compare=False, repr=False)

    def json_bytes(self) -> bytes:
        if self.encoded is not None:
            return self.encoded
        return encode_json(self.body)


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON, as the API answers (Starlette's JSONResponse rendering).

    orjson: the same bytes as `json.dumps(ensure_ascii=False, separators=(",", ":"))` for
    strings, integers, booleans and null (what the views make of every Decimal and date), at
    ~1 us against ~13 for a money answer. What orjson refuses (an integer beyond 64 bits, a
    key that is not a string) goes the stdlib's way. A float is never in an answer (orjson
    would write NaN as null where the stdlib refuses it)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class RequestKeyInFlight(Exception):
    """Another transaction holds this key and has not committed yet (answer 409)."""


class RequestKeyReused(Exception):
    """The key was used for a different request (answer 422)."""


@dataclass(frozen=True, slots=True)
class MoneyState:
    """What a drawdown or repayment reads under the facility's lock."""

    state: dict[str, Any]  # the credit_state row, locked until commit
    balances: dict[str, Decimal]
    positions: list[PositionRow]
    aged_lots: list[Lot]  # pledged lots received before the facility's max-age cutoff


@dataclass(frozen=True, slots=True)
class Opened:
    """`MoneyTx.open`: a replay of a stored answer, or the locked state (None: no credit line)."""

    replay: StoredResponse | None
    money: MoneyState | None


# The credit_state columns a drawdown or repayment writes back (`MoneyWrites.state`).
MONEY_STATE_COLUMNS = (
    "accrued_through",
    "posting_seq",
    "state",
    "frozen",
    "last_outstanding",
    "last_bb",
    "last_market_value",
)


@dataclass(frozen=True, slots=True)
class MoneyWrites:
    """Everything a money operation writes, booked at once (one statement on PostgreSQL)."""

    facility_id: str
    postings: list[Posting]
    first_seq: int
    balances: dict[str, Decimal]  # accounts whose balance changed, new values
    state: dict[str, Any]  # the MONEY_STATE_COLUMNS of credit_state, new values
    events: list[dict[str, Any]]  # credit_event rows

    def then(self, later: MoneyWrites) -> MoneyWrites:
        """These writes followed by `later`'s on the same facility: one booking of both."""
        if later.facility_id != self.facility_id:
            raise ValueError(f"cannot merge writes of {later.facility_id} into {self.facility_id}")
        if later.first_seq != self.first_seq + len(self.postings):
            raise ValueError("merged writes must continue the posting sequence")
        return MoneyWrites(
            self.facility_id,
            self.postings + later.postings,
            self.first_seq,
            {**self.balances, **later.balances},
            later.state,
            self.events + later.events,
        )

    def applied_to(self, money: MoneyState) -> MoneyState:
        """The facility's money state once these writes are booked (positions and lots unchanged)."""
        state, balances = {**money.state, **self.state}, {**money.balances, **self.balances}
        return MoneyState(state, balances, money.positions, money.aged_lots)


@dataclass(frozen=True, slots=True)
class MoneyAsk:
    """One request of a batch (`MoneyBatchTx.open`): which facility, its aged-lot cutoff, its key."""

    facility_id: str
    aged_before: datetime
    request: RequestKey | None


class MoneyTx(abc.ABC):
    """The hot path of drawdowns and repayments: claim, lock and read, then book; one
    transaction, as few round trips as the database allows (docs/scaling.md)."""

    @abc.abstractmethod
    async def open(
        self, facility_id: str, aged_before: datetime, request: RequestKey | None, now: datetime
    ) -> Opened:
        """Claim `request`'s key (if any) and lock and read the facility's money state.

        A key already answered returns its stored response; RequestKeyReused if it was used for
        another request; RequestKeyInFlight if an uncommitted transaction holds it.
        """

    @abc.abstractmethod
    async def book(
        self, writes: MoneyWrites, request: RequestKey | None, response: StoredResponse | None
    ) -> None:
        """Write postings, balances, credit state, events and the stored response together.

        IdempotencyConflict if a posting's idempotency key was already booked.
        """

    @abc.abstractmethod
    async def respond(self, request: RequestKey, response: StoredResponse) -> None:
        """Store the answer of a refused request (nothing else is written)."""


class MoneyBatchTx(abc.ABC):
    """Group commit: the money requests of several facilities in one transaction.

    `open` claims every key and locks and reads every facility (in facility order, so that
    batches never deadlock each other); the caller decides each request in memory, then `book`
    writes all the postings and stored answers at once. A batch holds at most one ask per
    Idempotency-Key; several asks may name the same facility (its state is read once).
    """

    @abc.abstractmethod
    async def open(
        self, asks: Sequence[MoneyAsk], now: datetime
    ) -> list[Opened | RequestKeyInFlight | RequestKeyReused]:
        """Per ask, as `MoneyTx.open` (asks of one facility share one `MoneyState`); a key held
        by another transaction is its `RequestKeyInFlight`, one used for another request its
        `RequestKeyReused`."""

    @abc.abstractmethod
    async def book(
        self, writes: Sequence[MoneyWrites], answers: Sequence[tuple[RequestKey, StoredResponse]]
    ) -> None:
        """Book the writes (at most one per facility: merge with `MoneyWrites.then`) and store the
        answers of the batch's keyed requests, refusals included."""


class LedgerStore(abc.ABC):
    # Whether transactions that write can make progress side by side (PostgreSQL), or the
    # store admits one writer at a time (SQLite), so that starting a second only makes it wait.
    concurrent_writes: bool = True

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """An atomic unit of work yielding a `LedgerTx`."""

    @abc.abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[Any]:
        """A read-only `LedgerTx` whose reads all see the database at one instant, however many
        statements they take (an audit's entries and head, a statement's sums and postings):
        no write committed meanwhile shows in some of them and not in others."""

    @abc.abstractmethod
    def money_transaction(self) -> AbstractAsyncContextManager[MoneyTx]:
        """An atomic unit of work for one drawdown or repayment."""

    @abc.abstractmethod
    def money_batch(self) -> AbstractAsyncContextManager[MoneyBatchTx]:
        """An atomic unit of work for a batch of drawdowns and repayments (group commit)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
