"""The money desk on PostgreSQL: a drawdown or repayment in four round trips.

BEGIN; one statement that claims the Idempotency-Key (advisory lock + insert), locks the
facility's credit state and reads its balances, positions and aged lots (read again, a fifth
round trip, only when another transaction changed them while we waited for the lock); one that
writes postings, lines, balances, credit state, events and the stored answer (data-modifying
CTEs over unnest'ed arrays); COMMIT. Through SQLAlchemy, statement by statement
(`SqlMoneyTx`), the same work took about fourteen round trips; each costs a send and a receive
and a wake-up of the event loop, which is what limited the API's money rate (docs/scaling.md).

Runs on the asyncpg connection under the engine's own pool (no second pool); the rules are those
of ledger/store/money_sql.py, and tests/ledger/test_money_desk.py holds both to one contract.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.core.errors import IdempotencyConflict
from ledger.core.lot import Lot, LotStatus
from ledger.store.money_sql import advisory_key, stored_outcome
from ledger.store.port import (
    MONEY_STATE_COLUMNS,
    MoneyState,
    MoneyTx,
    MoneyWrites,
    Opened,
    PositionRow,
    RequestKey,
    RequestKeyInFlight,
    StoredResponse,
)
from ledger.store.tables import credit_state

# Plain columns and arrays of built-in types only: a row or composite type would make asyncpg
# introspect it on each new connection, a query that PostgreSQL's JIT can take a second over.
_SNAPSHOT = """
(SELECT array_agg(account) AS b_account, array_agg(balance) AS b_balance
 FROM account_balance WHERE facility_id = $1) b,
(SELECT array_agg(sku_id) AS p_sku, array_agg(pledged_qty) AS p_pledged,
        array_agg(eligible_qty) AS p_eligible, array_agg(price) AS p_price,
        array_agg(price_at) AS p_price_at, array_agg(haircut) AS p_haircut
 FROM "position" WHERE facility_id = $1) p,
(SELECT array_agg(lot_id) AS l_id, array_agg(epc) AS l_epc, array_agg(sku_id) AS l_sku,
        array_agg(quantity) AS l_quantity, array_agg(site_id) AS l_site,
        array_agg(zone_id) AS l_zone, array_agg(pledged) AS l_pledged,
        array_agg(verified) AS l_verified, array_agg(received_at) AS l_received
 FROM lot WHERE facility_id = $1 AND status = $3 AND received_at < $2) l
"""

# Claim the key, lock the facility's credit_state and read what the operation needs, in one
# statement. In READ COMMITTED that statement reads from the snapshot taken when it started;
# only the locked row itself is re-read after a wait for the lock. So if another transaction
# booked money while we waited, the balances read would be stale (the race test catches that).
# Every writer of balances also writes credit_state in the same transaction (and a movement's
# line re-assessment writes it too), so "the locked row is the version our snapshot saw" (same
# xmin) proves the snapshot current; otherwise `_READ` reads again, after the lock.
_OPEN = (
    """
WITH lk AS (
    SELECT CASE WHEN $4::text IS NULL THEN true ELSE pg_try_advisory_xact_lock($5::bigint) END AS got
), ins AS (
    INSERT INTO idempotency_record (scope, key, request_hash, state, created_at)
    SELECT $4, $6, $7, 'in_flight', $8 FROM lk WHERE lk.got AND $4::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT lk.got, (SELECT count(*) FROM ins) AS claimed,
       (SELECT xmin::text FROM credit_state WHERE facility_id = $1) AS seen_xmin,
       c.*, b.*, p.*, l.*
FROM lk LEFT JOIN LATERAL (
    SELECT cs.*, cs.xmin::text AS locked_xmin FROM credit_state cs
    WHERE cs.facility_id = $1 AND lk.got FOR UPDATE
) c ON true,
"""
    + _SNAPSHOT
)

_READ = "SELECT b.*, p.*, l.* FROM " + _SNAPSHOT

_STORED = """
SELECT request_hash, state, status_code, body FROM idempotency_record WHERE scope = $1 AND key = $2
"""

_BOOK = """
WITH p AS (
    INSERT INTO posting (facility_id, posting_id, seq, at, kind, currency, amount, memo, idempotency_key)
    SELECT $1, u.* FROM unnest($2::text[], $3::int[], $4::timestamptz[], $5::text[], $6::text[],
                               $7::numeric[], $8::text[], $9::text[]) AS u
), l AS (
    INSERT INTO posting_line (facility_id, posting_id, line_no, account, debit, credit)
    SELECT $1, u.* FROM unnest($10::text[], $11::int[], $12::text[], $13::numeric[], $14::numeric[]) AS u
), b AS (
    INSERT INTO account_balance (facility_id, account, balance)
    SELECT $1, u.* FROM unnest($15::text[], $16::numeric[]) AS u
    ON CONFLICT (facility_id, account) DO UPDATE SET balance = excluded.balance
), s AS (
    UPDATE credit_state SET accrued_through = $17, posting_seq = $18, state = $19, frozen = $20,
        last_outstanding = $21, last_bb = $22, last_market_value = $23
    WHERE facility_id = $1
), e AS (
    INSERT INTO credit_event (facility_id, at, kind, trigger, facts)
    SELECT $1, u.at, u.kind, u.trigger, u.facts::json
    FROM unnest($24::timestamptz[], $25::text[], $26::text[], $27::text[]) AS u(at, kind, trigger, facts)
), r AS (
    UPDATE idempotency_record SET state = 'done', status_code = $28, body = $29
    WHERE scope = $30 AND key = $31 AND $30::text IS NOT NULL
)
SELECT 1
"""

_RESPOND = """
UPDATE idempotency_record SET state = 'done', status_code = $3, body = $4 WHERE scope = $1 AND key = $2
"""


_STATE_COLUMNS = tuple(c.name for c in credit_state.columns)


class PgMoneyTx(MoneyTx):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def open(
        self, facility_id: str, aged_before: datetime, request: RequestKey | None, now: datetime
    ) -> Opened:
        scope = None if request is None else request.scope
        lock = 0 if request is None else advisory_key(request)
        key = None if request is None else request.key
        fingerprint = None if request is None else request.fingerprint
        status = str(LotStatus.PLEDGED)
        row = await self.conn.fetchrow(
            _OPEN, facility_id, aged_before, status, scope, lock, key, fingerprint, now
        )
        assert row is not None
        if not row["got"]:
            raise RequestKeyInFlight()
        if request is not None and row["claimed"] == 0:
            stored = await self.conn.fetchrow(_STORED, request.scope, request.key)
            if stored is None:  # pragma: no cover - the conflicting row cannot vanish under our lock
                raise RequestKeyInFlight()
            found = stored_outcome(
                request, stored["request_hash"], stored["state"], stored["status_code"], stored["body"]
            )
            return Opened(found, None)
        if row["facility_id"] is None:
            return Opened(None, None)
        st = {k: row[k] for k in _STATE_COLUMNS}
        r = row
        if row["locked_xmin"] != row["seen_xmin"]:  # someone wrote while we waited: read again
            r = await self.conn.fetchrow(_READ, facility_id, aged_before, status)
            assert r is not None
        positions = [
            PositionRow(facility_id, *cols)
            for cols in zip(
                *(
                    r[c] or ()
                    for c in ("p_sku", "p_pledged", "p_eligible", "p_price", "p_price_at", "p_haircut")
                ),
                strict=True,
            )
        ]
        aged = [
            Lot(
                lot_id=lot_id,
                facility_id=facility_id,
                epc=epc,
                sku_id=sku,
                quantity=qty,
                site_id=site,
                zone_id=zone,
                status=LotStatus.PLEDGED,
                pledged=pledged,
                verified=verified,
                received_at=received,
            )
            for lot_id, epc, sku, qty, site, zone, pledged, verified, received in zip(
                *(
                    r[c] or ()
                    for c in (
                        "l_id",
                        "l_epc",
                        "l_sku",
                        "l_quantity",
                        "l_site",
                        "l_zone",
                        "l_pledged",
                        "l_verified",
                        "l_received",
                    )
                ),
                strict=True,
            )
        ]
        balances = dict(zip(r["b_account"] or (), r["b_balance"] or (), strict=True))
        return Opened(None, MoneyState(st, balances, positions, aged))

    async def book(
        self, writes: MoneyWrites, request: RequestKey | None, response: StoredResponse | None
    ) -> None:
        if set(writes.state) != set(MONEY_STATE_COLUMNS):
            raise ValueError(f"a booking updates exactly {MONEY_STATE_COLUMNS}, not {sorted(writes.state)}")
        ps, lines = writes.postings, [(p, n, ln) for p in writes.postings for n, ln in enumerate(p.lines)]
        st, events = writes.state, writes.events
        answered = request is not None and response is not None
        try:
            await self.conn.execute(
                _BOOK,
                writes.facility_id,
                [p.posting_id for p in ps],
                [writes.first_seq + i for i in range(len(ps))],
                [p.at for p in ps],
                [p.kind for p in ps],
                [p.currency for p in ps],
                [p.amount for p in ps],
                [p.memo for p in ps],
                [p.idempotency_key for p in ps],
                [p.posting_id for p, _, _ in lines],
                [n for _, n, _ in lines],
                [ln.account for _, _, ln in lines],
                [ln.debit for _, _, ln in lines],
                [ln.credit for _, _, ln in lines],
                list(writes.balances),
                list(writes.balances.values()),
                *(st[c] for c in MONEY_STATE_COLUMNS),
                [e["at"] for e in events],
                [e["kind"] for e in events],
                [e["trigger"] for e in events],
                [json.dumps(e["facts"]) for e in events],
                response.status_code if answered else None,  # type: ignore[union-attr]
                json.dumps(response.body) if answered else None,  # type: ignore[union-attr]
                request.scope if answered else None,  # type: ignore[union-attr]
                request.key if answered else None,  # type: ignore[union-attr]
            )
        except asyncpg.UniqueViolationError as e:
            if e.constraint_name == "ux_posting_idempotency":
                raise IdempotencyConflict(
                    "this Idempotency-Key has already booked a posting on this facility",
                    key=ps[0].idempotency_key if ps else None,
                ) from e
            raise

    async def respond(self, request: RequestKey, response: StoredResponse) -> None:
        await self.conn.execute(
            _RESPOND, request.scope, request.key, response.status_code, json.dumps(response.body)
        )


@asynccontextmanager
async def pg_money_transaction(engine: AsyncEngine) -> AsyncIterator[PgMoneyTx]:
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
                yield PgMoneyTx(conn)
        except (asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError, OSError):
            await sa_conn.invalidate()
            raise


__all__ = ["PgMoneyTx", "pg_money_transaction"]
