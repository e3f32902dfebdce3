"""SQL side of the credit facility's money (mixed into `SqlTx`): credit state, postings and
balances, credit events and releases. Same two databases, same rules as ledger/store/sql.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.core.errors import IdempotencyConflict
from ledger.core.posting import Posting, PostingLine
from ledger.store import tables as t
from ledger.store.money_sql import claim_request, forget_requests, store_response
from ledger.store.port import RequestKey, StoredResponse


class CreditSqlMixin:
    conn: AsyncConnection
    dialect: str

    async def claim_request(self, request: RequestKey, now: datetime) -> StoredResponse | None:
        """Claim an Idempotency-Key in this transaction (rules in ledger/store/money_sql.py)."""
        return await claim_request(self, request, now)

    async def forget_requests(self, before: datetime, limit: int) -> int:
        """Forget up to `limit` answered Idempotency-Keys created before `before` (money_sql.py)."""
        return await forget_requests(self, before, limit)

    async def store_response(self, request: RequestKey, response: StoredResponse) -> None:
        await store_response(self, request, response)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Undo what the block wrote if it raises; the transaction goes on."""
        async with self.conn.begin_nested():
            yield

    async def insert_credit_state(self, values: dict[str, Any]) -> None:
        await self.conn.execute(t.credit_state.insert().values(values))

    async def lock_credit_state(self, facility_id: str) -> dict[str, Any] | None:
        q = select(t.credit_state).where(t.credit_state.c.facility_id == facility_id)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        row = (await self.conn.execute(q)).first()
        return None if row is None else dict(row._mapping)

    async def credit_states(
        self, facility_ids: Iterable[str], lock: bool = False
    ) -> dict[str, dict[str, Any]]:
        """The credit states of `facility_ids` (those with one); `lock`: FOR UPDATE, in facility
        order (the order money batches lock them in), held until the transaction ends."""
        ids = sorted(set(facility_ids))
        if not ids:
            return {}
        q = select(t.credit_state).where(t.credit_state.c.facility_id.in_(ids))
        if lock and self.dialect == "postgresql":
            q = q.order_by(t.credit_state.c.facility_id).with_for_update()
        rows = await self.conn.execute(q)
        return {r.facility_id: dict(r._mapping) for r in rows}

    async def update_credit_states(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        # In facility order, the order in which money batches lock credit_state: a movement's
        # re-assessment of several facilities never deadlocks with a batch (ledger/money_desk.py).
        rows = sorted(rows, key=lambda r: r["facility_id"])
        cols = [k for k in rows[0] if k != "facility_id"]
        stmt = (
            update(t.credit_state)
            .where(t.credit_state.c.facility_id == bindparam("b_facility_id"))
            .values({c: bindparam(c) for c in cols})
        )
        await self.conn.execute(
            stmt, [{"b_facility_id": r["facility_id"], **{c: r[c] for c in cols}} for r in rows]
        )

    async def balances(self, facility_ids: Iterable[str]) -> dict[str, dict[str, Decimal]]:
        ids = sorted(set(facility_ids))
        out: dict[str, dict[str, Decimal]] = {f: {} for f in ids}
        if ids:
            rows = await self.conn.execute(
                select(t.account_balance).where(t.account_balance.c.facility_id.in_(ids))
            )
            for r in rows:
                out[r.facility_id][r.account] = r.balance
        return out

    async def put_balances(self, facility_id: str, balances: dict[str, Decimal]) -> None:
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(t.account_balance)
        stmt = ins.on_conflict_do_update(
            index_elements=["facility_id", "account"], set_={"balance": ins.excluded.balance}
        )
        await self.conn.execute(
            stmt, [{"facility_id": facility_id, "account": a, "balance": b} for a, b in balances.items()]
        )

    async def insert_postings(self, postings: Sequence[Posting], first_seq: int) -> None:
        if not postings:
            return
        try:
            await self._insert_posting_rows(postings, first_seq)
        except IntegrityError as e:  # ux_posting_idempotency: the key already booked money
            raise IdempotencyConflict(
                "this Idempotency-Key has already booked a posting on this facility",
                key=postings[0].idempotency_key,
            ) from e

    async def _insert_posting_rows(self, postings: Sequence[Posting], first_seq: int) -> None:
        await self.conn.execute(
            t.posting.insert(),
            [
                {
                    "facility_id": p.facility_id,
                    "posting_id": p.posting_id,
                    "seq": first_seq + i,
                    "at": p.at,
                    "kind": p.kind,
                    "currency": p.currency,
                    "amount": p.amount,
                    "memo": p.memo,
                    "idempotency_key": p.idempotency_key,
                }
                for i, p in enumerate(postings)
            ],
        )
        await self.conn.execute(
            t.posting_line.insert(),
            [
                {
                    "facility_id": p.facility_id,
                    "posting_id": p.posting_id,
                    "line_no": n,
                    "account": line.account,
                    "debit": line.debit,
                    "credit": line.credit,
                }
                for p in postings
                for n, line in enumerate(p.lines)
            ],
        )

    async def postings(
        self,
        facility_id: str,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[Posting]:
        """The facility's postings in journal order: `since` <= at < `until`, seq > `after_seq`."""
        q = (
            select(t.posting)
            .where(t.posting.c.facility_id == facility_id, t.posting.c.seq > after_seq)
            .order_by(t.posting.c.seq)
        )
        if until is not None:
            q = q.where(t.posting.c.at < until)
        if since is not None:
            q = q.where(t.posting.c.at >= since)
        if limit is not None:
            q = q.limit(limit)
        heads = (await self.conn.execute(q)).all()
        if not heads:
            return []
        ids = [h.posting_id for h in heads]
        lines: dict[str, list[PostingLine]] = {i: [] for i in ids}
        for chunk_start in range(0, len(ids), 5000):
            chunk = ids[chunk_start : chunk_start + 5000]
            rows = await self.conn.execute(
                select(t.posting_line)
                .where(t.posting_line.c.facility_id == facility_id, t.posting_line.c.posting_id.in_(chunk))
                .order_by(t.posting_line.c.posting_id, t.posting_line.c.line_no)
            )
            for r in rows:
                lines[r.posting_id].append(_line(r.account, r.debit, r.credit))
        return [
            Posting(
                h.posting_id,
                h.facility_id,
                h.at,
                h.kind,
                tuple(lines[h.posting_id]),
                h.currency,
                h.memo,
                h.idempotency_key,
            )
            for h in heads
        ]

    async def posting_sums(self, facility_id: str, before: datetime | None = None) -> dict[str, Decimal]:
        """Each account's balance re-derived from the facility's posting lines (debit - credit),
        over the postings booked at `before` or later left out (None: all of them); accounts
        without lines are absent.

        PostgreSQL sums in the database (numeric: exact); SQLite keeps amounts as text, which its
        SUM would turn into floats, so there the lines are summed here as Decimals. Either way no
        Posting is built: a statement or an audit of a long history costs one pass over its lines.
        """
        line, head = t.posting_line, t.posting
        keys = (line.c.facility_id == head.c.facility_id) & (line.c.posting_id == head.c.posting_id)
        where = [line.c.facility_id == facility_id]
        if before is not None:
            where += [head.c.facility_id == facility_id, head.c.at < before]
        source = line.join(head, keys) if before is not None else line
        if self.dialect == "postgresql":
            net = func.sum(line.c.debit) - func.sum(line.c.credit)
            rows = await self.conn.execute(
                select(line.c.account, net).select_from(source).where(*where).group_by(line.c.account)
            )
            return {account: Decimal(total) for account, total in rows}
        sums: dict[str, Decimal] = {}
        result = await self.conn.stream(
            select(line.c.account, line.c.debit, line.c.credit).select_from(source).where(*where)
        )
        async for account, debit, credit in result:
            sums[account] = sums.get(account, Decimal(0)) + debit - credit
        return sums

    async def insert_credit_events(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(t.credit_event.insert(), list(rows))

    async def credit_events(
        self, facility_id: str, after_id: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        rows = await self.conn.execute(
            select(t.credit_event)
            .where(t.credit_event.c.facility_id == facility_id, t.credit_event.c.event_id > after_id)
            .order_by(t.credit_event.c.event_id)
            .limit(limit)
        )
        return [dict(r._mapping) for r in rows]

    async def insert_release(self, values: dict[str, Any]) -> None:
        await self.conn.execute(t.release.insert().values(values))

    async def releases(self, facility_id: str) -> list[dict[str, Any]]:
        rows = await self.conn.execute(
            select(t.release).where(t.release.c.facility_id == facility_id).order_by(t.release.c.at)
        )
        return [dict(r._mapping) for r in rows]


def _line(account: str, debit: Decimal, credit: Decimal) -> PostingLine:
    return PostingLine(account, debit, credit)
