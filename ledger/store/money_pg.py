"""The money desk on PostgreSQL: a batch of drawdowns and repayments in four round trips.

BEGIN; one statement that claims every Idempotency-Key of the batch (advisory locks + inserts),
locks the batch's facilities' credit state in facility order and reads their balances, positions
and aged lots (read again, a fifth round trip, only for facilities another transaction changed
while we waited for their lock); one statement that writes all the postings, lines, balances,
credit states, events and stored answers (data-modifying CTEs over unnest'ed arrays); COMMIT.
A request alone is a batch of one: the same four round trips. Through SQLAlchemy, statement by
statement (`SqlMoneyTx`), one request took about fourteen; each costs a send, a receive and a
wake-up of the event loop, which is what limited the API's money rate (docs/scaling.md).

Runs on the asyncpg connection under the engine's own pool (no second pool); the rules are those
of ledger/store/money_sql.py, and tests/ledger/test_money_desk.py holds both to one contract.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.core.errors import IdempotencyConflict
from ledger.core.lot import Lot, LotStatus
from ledger.store.money_sql import advisory_key, stored_outcome
from ledger.store.port import (
    MONEY_STATE_COLUMNS,
    MoneyAsk,
    MoneyBatchTx,
    MoneyState,
    MoneyWrites,
    Opened,
    PositionRow,
    RequestKey,
    RequestKeyInFlight,
    RequestKeyReused,
    StoredResponse,
)
from ledger.store.tables import credit_state
from ledger.store.types import DecimalType

# Numerics travel as text both ways (`::text[]` out, `$n::text[]::numeric[]` in), exact either
# way: asyncpg's binary numeric codec took ~3.6 us per array element to encode and ~1.5 us to
# decode here, text and Decimal() ~1.3 and ~0.6 (a batch books ~10 numerics per request).
# Plain columns and arrays of built-in types only: a row or composite type would make asyncpg
# introspect it on each new connection, a query that PostgreSQL's JIT can take a second over.
# `f` is the batch's facilities (fid, aged-lot cutoff, first ask); these read their state.
_READS = """
r AS (
    SELECT f.fid, b.*, p.*, l.* FROM f
    CROSS JOIN LATERAL (
        SELECT array_agg(account) AS b_account, array_agg(balance)::text[] AS b_balance
        FROM account_balance WHERE facility_id = f.fid) b
    CROSS JOIN LATERAL (
        SELECT array_agg(sku_id) AS p_sku, array_agg(pledged_qty)::text[] AS p_pledged,
               array_agg(eligible_qty)::text[] AS p_eligible, array_agg(price)::text[] AS p_price,
               array_agg(price_at) AS p_price_at, array_agg(haircut)::text[] AS p_haircut
        FROM "position" WHERE facility_id = f.fid) p
    CROSS JOIN LATERAL (
        SELECT array_agg(lot_id) AS l_id, array_agg(epc) AS l_epc, array_agg(sku_id) AS l_sku,
               array_agg(quantity)::text[] AS l_quantity, array_agg(site_id) AS l_site,
               array_agg(zone_id) AS l_zone, array_agg(pledged) AS l_pledged,
               array_agg(verified) AS l_verified, array_agg(received_at) AS l_received
        FROM lot WHERE facility_id = f.fid AND status = $8 AND received_at < f.aged) l
)
"""
_READ_COLUMNS = (
    "r.b_account, r.b_balance, r.p_sku, r.p_pledged, r.p_eligible, r.p_price, r.p_price_at, "
    "r.p_haircut, r.l_id, r.l_epc, r.l_sku, r.l_quantity, r.l_site, r.l_zone, r.l_pledged, "
    "r.l_verified, r.l_received"
)

# Claim the keys, lock the facilities' credit_state (in facility order: batches never deadlock
# each other) and read what the requests need, in one statement. In READ COMMITTED that
# statement reads from the snapshot taken when it started; only the locked rows themselves are
# re-read after a wait for a lock. So if another transaction booked money on a facility while we
# waited, its balances read here would be stale (the race test catches that). Every writer of
# balances also writes credit_state in the same transaction (and a movement's line
# re-assessment writes it too), so "the locked row is the version our snapshot saw" (same xmin)
# proves the snapshot current; otherwise `_READ` reads that facility again, after the lock.
_OPEN = (
    """
WITH a AS MATERIALIZED (
    SELECT u.*, CASE WHEN u.scope IS NULL THEN true ELSE pg_try_advisory_xact_lock(u.lk) END AS got
    FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::text[], $6::text[])
         WITH ORDINALITY AS u(fid, aged, scope, lk, key, fp, ord)
), ins AS (
    INSERT INTO idempotency_record (scope, key, request_hash, state, created_at)
    SELECT scope, key, fp, 'in_flight', $7 FROM a WHERE got AND scope IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING scope, key
), f AS MATERIALIZED (
    SELECT fid, max(aged) AS aged, min(ord) AS first_ord FROM a WHERE got GROUP BY fid
), c AS MATERIALIZED (
    SELECT cs.*, cs.xmin::text AS locked_xmin FROM credit_state cs
    WHERE cs.facility_id IN (SELECT fid FROM f) ORDER BY cs.facility_id FOR UPDATE
), seen AS (
    SELECT facility_id AS fid, xmin::text AS seen_xmin FROM credit_state
    WHERE facility_id IN (SELECT fid FROM f)
),
"""
    + _READS
    + """
SELECT a.ord, a.got, ins.key IS NOT NULL AS claimed, f.first_ord IS NOT NULL AS first, seen.seen_xmin,
       c.*, """
    + _READ_COLUMNS
    + """
FROM a
LEFT JOIN ins ON ins.scope = a.scope AND ins.key = a.key
LEFT JOIN f ON f.first_ord = a.ord
LEFT JOIN seen ON seen.fid = f.fid
LEFT JOIN c ON c.facility_id = f.fid
LEFT JOIN r ON r.fid = f.fid
ORDER BY a.ord
"""
)

_READ = (
    """
WITH f AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS u(fid, aged)),
"""
    + _READS.replace("$8", "$3")
    + "SELECT r.fid, "
    + _READ_COLUMNS
    + " FROM r"
)

_STORED = """
SELECT r.scope, r.key, r.request_hash, r.state, r.status_code, r.body
FROM idempotency_record r JOIN unnest($1::text[], $2::text[]) AS u(scope, key)
  ON r.scope = u.scope AND r.key = u.key
"""

_BOOK = """
WITH p AS (
    INSERT INTO posting (facility_id, posting_id, seq, at, kind, currency, amount, memo, idempotency_key)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::text[], $6::text[],
                         $7::text[]::numeric[], $8::text[], $9::text[])
), l AS (
    INSERT INTO posting_line (facility_id, posting_id, line_no, account, debit, credit)
    SELECT * FROM unnest($10::text[], $11::text[], $12::int[], $13::text[], $14::text[]::numeric[],
                         $15::text[]::numeric[])
), b AS (
    INSERT INTO account_balance (facility_id, account, balance)
    SELECT * FROM unnest($16::text[], $17::text[], $18::text[]::numeric[])
    ON CONFLICT (facility_id, account) DO UPDATE SET balance = excluded.balance
), s AS (
    UPDATE credit_state cs SET accrued_through = u.accrued_through, posting_seq = u.posting_seq,
        state = u.state, frozen = u.frozen, last_outstanding = u.last_outstanding,
        last_bb = u.last_bb, last_market_value = u.last_market_value
    FROM unnest($19::text[], $20::text[], $21::int[], $22::text[], $23::bool[], $24::text[]::numeric[],
                $25::text[]::numeric[], $26::text[]::numeric[])
         AS u(fid, accrued_through, posting_seq, state, frozen, last_outstanding, last_bb, last_market_value)
    WHERE cs.facility_id = u.fid
), e AS (
    INSERT INTO credit_event (facility_id, at, kind, trigger, facts)
    SELECT u.fid, u.at, u.kind, u.trigger, u.facts::json
    FROM unnest($27::text[], $28::timestamptz[], $29::text[], $30::text[], $31::text[])
         WITH ORDINALITY AS u(fid, at, kind, trigger, facts, n)
    ORDER BY u.n
), r AS (
    UPDATE idempotency_record ir SET state = 'done', status_code = u.code, body = u.body
    FROM unnest($32::text[], $33::text[], $34::int[], $35::text[]) AS u(scope, key, code, body)
    WHERE ir.scope = u.scope AND ir.key = u.key
)
SELECT 1
"""

_STATE_COLUMNS = tuple(c.name for c in credit_state.columns)
_POSITION_COLUMNS = ("p_sku", "p_pledged", "p_eligible", "p_price", "p_price_at", "p_haircut")
_LOT_COLUMNS = (
    "l_id", "l_epc", "l_sku", "l_quantity", "l_site", "l_zone", "l_pledged", "l_verified", "l_received"
)


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


_NUMERIC_STATE = frozenset(c.name for c in credit_state.columns if isinstance(c.type, DecimalType))


def _state_param(column: str, v: Any) -> Any:
    """A credit_state value as the write statement takes it: numerics as exact text."""
    return str(v) if column in _NUMERIC_STATE and v is not None else v


def _money(facility_id: str, state: dict[str, Any], r: Any) -> MoneyState:
    """A facility's MoneyState from its locked credit_state and a row of `_READS` columns."""
    positions = [
        PositionRow(
            facility_id, sku, Decimal(pledged), Decimal(eligible), _dec(price), price_at, Decimal(haircut)
        )
        for sku, pledged, eligible, price, price_at, haircut in zip(
            *(r[c] or () for c in _POSITION_COLUMNS), strict=True
        )
    ]
    aged = [
        Lot(
            lot_id=lot_id,
            facility_id=facility_id,
            epc=epc,
            sku_id=sku,
            quantity=Decimal(qty),
            site_id=site,
            zone_id=zone,
            status=LotStatus.PLEDGED,
            pledged=pledged,
            verified=verified,
            received_at=received,
        )
        for lot_id, epc, sku, qty, site, zone, pledged, verified, received in zip(
            *(r[c] or () for c in _LOT_COLUMNS), strict=True
        )
    ]
    balances = {a: Decimal(b) for a, b in zip(r["b_account"] or (), r["b_balance"] or (), strict=True)}
    return MoneyState(state, balances, positions, aged)


class PgMoneyBatch(MoneyBatchTx):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def open(
        self, asks: Sequence[MoneyAsk], now: datetime
    ) -> list[Opened | RequestKeyInFlight | RequestKeyReused]:
        reqs = [a.request for a in asks]
        status = str(LotStatus.PLEDGED)
        rows = await self.conn.fetch(
            _OPEN,
            [a.facility_id for a in asks],
            [a.aged_before for a in asks],
            [None if r is None else r.scope for r in reqs],
            [0 if r is None else advisory_key(r) for r in reqs],
            [None if r is None else r.key for r in reqs],
            [None if r is None else r.fingerprint for r in reqs],
            now,
            status,
        )
        states: dict[str, MoneyState | None] = {}
        stale: dict[str, tuple[dict[str, Any], datetime]] = {}
        for a, row in zip(asks, rows, strict=True):
            if row["first"]:
                if row["facility_id"] is None:
                    states[a.facility_id] = None
                    continue
                st = {k: row[k] for k in _STATE_COLUMNS}
                if row["locked_xmin"] != row["seen_xmin"]:  # written while we waited: read again
                    stale[a.facility_id] = (st, a.aged_before)
                else:
                    states[a.facility_id] = _money(a.facility_id, st, row)
        if stale:
            fids = sorted(stale)
            for r in await self.conn.fetch(_READ, fids, [stale[f][1] for f in fids], status):
                states[r["fid"]] = _money(r["fid"], stale[r["fid"]][0], r)
        replays = [
            (i, a.request) for i, (a, row) in enumerate(zip(asks, rows, strict=True))
            if row["got"] and a.request is not None and not row["claimed"]
        ]
        stored: dict[tuple[str, str], Any] = {}
        if replays:
            found = await self.conn.fetch(
                _STORED, [r.scope for _, r in replays], [r.key for _, r in replays]
            )
            stored = {(s["scope"], s["key"]): s for s in found}
        out: list[Opened | RequestKeyInFlight | RequestKeyReused] = []
        for a, row in zip(asks, rows, strict=True):
            req = a.request
            if not row["got"]:
                out.append(RequestKeyInFlight())
            elif req is not None and not row["claimed"]:
                s = stored.get((req.scope, req.key))
                if s is None:  # pragma: no cover - the conflicting row cannot vanish under our lock
                    out.append(RequestKeyInFlight())
                    continue
                try:
                    found = stored_outcome(req, s["request_hash"], s["state"], s["status_code"], s["body"])
                    out.append(Opened(found, None))
                except (RequestKeyInFlight, RequestKeyReused) as e:
                    out.append(e)
            else:
                out.append(Opened(None, states[a.facility_id]))
        return out

    async def book(
        self, writes: Sequence[MoneyWrites], answers: Sequence[tuple[RequestKey, StoredResponse]]
    ) -> None:
        for w in writes:
            if set(w.state) != set(MONEY_STATE_COLUMNS):
                raise ValueError(f"a booking updates exactly {MONEY_STATE_COLUMNS}, not {sorted(w.state)}")
        ps = [(w.facility_id, w.first_seq + i, p) for w in writes for i, p in enumerate(w.postings)]
        lines = [(p, n, ln) for _, _, p in ps for n, ln in enumerate(p.lines)]
        bals = [(w.facility_id, a, v) for w in writes for a, v in w.balances.items()]
        events = [(w.facility_id, e) for w in writes for e in w.events]
        try:
            await self.conn.execute(
                _BOOK,
                [f for f, _, _ in ps],
                [p.posting_id for _, _, p in ps],
                [seq for _, seq, _ in ps],
                [p.at for _, _, p in ps],
                [p.kind for _, _, p in ps],
                [p.currency for _, _, p in ps],
                [str(p.amount) for _, _, p in ps],
                [p.memo for _, _, p in ps],
                [p.idempotency_key for _, _, p in ps],
                [p.facility_id for p, _, _ in lines],
                [p.posting_id for p, _, _ in lines],
                [n for _, n, _ in lines],
                [ln.account for _, _, ln in lines],
                [str(ln.debit) for _, _, ln in lines],
                [str(ln.credit) for _, _, ln in lines],
                [f for f, _, _ in bals],
                [a for _, a, _ in bals],
                [str(v) for _, _, v in bals],
                [w.facility_id for w in writes],
                *([_state_param(c, w.state[c]) for w in writes] for c in MONEY_STATE_COLUMNS),
                [e.get("facility_id", f) for f, e in events],
                [e["at"] for _, e in events],
                [e["kind"] for _, e in events],
                [e["trigger"] for _, e in events],
                [json.dumps(e["facts"]) for _, e in events],
                [r.scope for r, _ in answers],
                [r.key for r, _ in answers],
                [a.status_code for _, a in answers],
                [a.json_bytes().decode() for _, a in answers],
            )
        except asyncpg.UniqueViolationError as e:
            if e.constraint_name == "ux_posting_idempotency":
                raise IdempotencyConflict(
                    "this Idempotency-Key has already booked a posting on this facility",
                    key=next((p.idempotency_key for _, _, p in ps if p.idempotency_key), None),
                ) from e
            raise


@asynccontextmanager
async def pg_money_batch(engine: AsyncEngine) -> AsyncIterator[PgMoneyBatch]:
    """A transaction on the raw asyncpg connection of one of the engine's pooled connections.

    SQLAlchemy does not see this transaction (its own stays unstarted, so returning the
    connection to the pool sends nothing); a connection that broke under us is invalidated so
    that the pool does not hand it out again.
    """
    async with engine.connect() as sa_conn:
        raw = await sa_conn.get_raw_connection()
        conn: asyncpg.Connection = raw.driver_connection
        try:
            async with conn.transaction():
                yield PgMoneyBatch(conn)
        except (asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError, OSError):
            await sa_conn.invalidate()
            raise


__all__ = ["PgMoneyBatch", "pg_money_batch"]
