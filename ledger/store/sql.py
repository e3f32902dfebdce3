"""The SQL adapters of the ledger port: PostgreSQL (asyncpg) and SQLite (aiosqlite).

Both share this code (SQLAlchemy Core); they differ where the databases differ: row locks
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite has one writer, taken by BEGIN IMMEDIATE) and the
upsert construct. Lower-layer errors (IntegrityError) are mapped to ledger errors here, once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.core.errors import DoublePledge, DuplicateEpc, DuplicateId
from ledger.core.journal import JournalEntry
from ledger.core.lot import Lot, LotStatus, MovementKind
from ledger.core.price import PricePoint
from ledger.core.reference import Borrower, Facility, Site, Sku, SkuTerms, Zone
from ledger.store import tables as t
from ledger.store.credit_sql import CreditSqlMixin
from ledger.store.money_pg import pg_money_batch
from ledger.store.money_sql import SerialMoneyBatch, SqlMoneyTx
from ledger.store.port import (
    FacilityStateRow,
    LedgerStore,
    LedgerTx,
    LotFilter,
    MoneyBatchTx,
    MoneyTx,
    MovementFilter,
    PositionRow,
    SkuMarket,
)


def lot_from_row(r: Any) -> Lot:
    return Lot(
        lot_id=r.lot_id,
        facility_id=r.facility_id,
        epc=r.epc,
        sku_id=r.sku_id,
        quantity=r.quantity,
        site_id=r.site_id,
        zone_id=r.zone_id,
        status=LotStatus(r.status),
        pledged=r.pledged,
        verified=r.verified,
        received_at=r.received_at,
    )


_LOT_COLUMNS = (
    "lot_id",
    "facility_id",
    "epc",
    "sku_id",
    "quantity",
    "site_id",
    "zone_id",
    "status",
    "pledged",
    "verified",
    "received_at",
)


def lot_values(lot: Lot) -> dict[str, Any]:
    return {
        "lot_id": lot.lot_id,
        "facility_id": lot.facility_id,
        "epc": lot.epc,
        "sku_id": lot.sku_id,
        "quantity": lot.quantity,
        "site_id": lot.site_id,
        "zone_id": lot.zone_id,
        "status": str(lot.status),
        "pledged": lot.pledged,
        "verified": lot.verified,
        "received_at": lot.received_at,
    }


def entry_from_row(r: Any) -> JournalEntry:
    lot = lot_from_row(r)  # an entry row carries the lot's state after the movement
    return JournalEntry(
        r.facility_id,
        r.seq,
        r.at,
        MovementKind(r.kind),
        lot,
        tuple(r.evidence),
        r.reason,
        r.prev_hash,
        r.hash,
    )


def entry_values(e: JournalEntry) -> dict[str, Any]:
    values = lot_values(e.lot)
    values.update(
        seq=e.seq,
        at=e.at,
        kind=str(e.kind),
        evidence=list(e.evidence),
        reason=e.reason,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )
    return values


@dataclass
class SqlTx(CreditSqlMixin, LedgerTx):
    conn: AsyncConnection
    dialect: str

    # --- reference data -------------------------------------------------------------------
    async def insert_reference(self, obj: Site | Zone | Sku | Borrower) -> None:
        table, key = _REFERENCE[type(obj)]
        values = {c.name: getattr(obj, c.name) for c in table.columns}
        existing = (await self.conn.execute(select(table).where(table.c[key] == values[key]))).first()
        if existing is not None:
            if dict(existing._mapping) != values:
                raise DuplicateId(table.name, values[key])
            return
        await self.conn.execute(table.insert().values(values))

    async def get_reference(self, kind: type, ident: str, lock: bool = False) -> Any:
        table, key = _REFERENCE[kind]
        q = select(table).where(table.c[key] == ident)
        if lock and self.dialect == "postgresql":
            q = q.with_for_update()
        row = (await self.conn.execute(q)).first()
        return None if row is None else kind(**dict(row._mapping))

    async def list_reference(self, kind: type) -> list[Any]:
        table, key = _REFERENCE[kind]
        rows = await self.conn.execute(select(table).order_by(table.c[key]))
        return [kind(**dict(r._mapping)) for r in rows]

    async def insert_facility(self, f: Facility, created_at: datetime) -> None:
        values = {c.name: getattr(f, c.name) for c in t.facility.columns if c.name != "created_at"}
        try:
            await self.conn.execute(t.facility.insert().values({**values, "created_at": created_at}))
        except IntegrityError as e:
            raise DuplicateId("facility", f.facility_id) from e
        await self.conn.execute(
            t.facility_sku.insert(),
            [
                {
                    "facility_id": f.facility_id,
                    "sku_id": s.sku_id,
                    "advance_rate": s.advance_rate,
                    "concentration_limit": s.concentration_limit,
                }
                for s in f.terms.values()
            ],
        )
        await self.conn.execute(
            t.facility_site.insert(),
            [{"facility_id": f.facility_id, "site_id": s} for s in sorted(f.approved_sites)],
        )
        await self.conn.execute(
            t.journal_head.insert().values(facility_id=f.facility_id, seq=0, hash="0" * 64)
        )

    async def get_facilities(self, ids: Iterable[str]) -> dict[str, Facility]:
        ids = list(ids)
        if not ids:
            return {}
        rows = (await self.conn.execute(select(t.facility).where(t.facility.c.facility_id.in_(ids)))).all()
        terms = (
            await self.conn.execute(select(t.facility_sku).where(t.facility_sku.c.facility_id.in_(ids)))
        ).all()
        sites = (
            await self.conn.execute(select(t.facility_site).where(t.facility_site.c.facility_id.in_(ids)))
        ).all()
        by_terms: dict[str, dict[str, SkuTerms]] = {}
        for r in terms:
            by_terms.setdefault(r.facility_id, {})[r.sku_id] = SkuTerms(
                r.sku_id, r.advance_rate, r.concentration_limit
            )
        by_sites: dict[str, set[str]] = {}
        for r in sites:
            by_sites.setdefault(r.facility_id, set()).add(r.site_id)
        out = {}
        for r in rows:
            values = {k: v for k, v in r._mapping.items() if k != "created_at"}
            out[r.facility_id] = Facility(
                **values,
                terms=by_terms.get(r.facility_id, {}),
                approved_sites=frozenset(by_sites.get(r.facility_id, set())),
            )
        return out

    async def list_facility_ids(self) -> list[str]:
        rows = await self.conn.execute(select(t.facility.c.facility_id).order_by(t.facility.c.facility_id))
        return [r[0] for r in rows]

    async def facilities_with_sku(self, sku_id: str) -> list[str]:
        rows = await self.conn.execute(
            select(t.facility_sku.c.facility_id).where(t.facility_sku.c.sku_id == sku_id)
        )
        return sorted(r[0] for r in rows)

    # --- lots and the pledge registry --------------------------------------------------------
    async def insert_lots(self, lots: Sequence[Lot]) -> None:
        if not lots:
            return
        try:
            # A savepoint: on PostgreSQL a failed statement aborts the whole transaction, and we
            # still need to ask which EPC or id clashed to raise the right error.
            async with self.conn.begin_nested():
                await self.conn.execute(t.lot.insert(), [lot_values(lot) for lot in lots])
        except IntegrityError as e:
            clash = await self.lots_by_epc([lot.epc for lot in lots])
            if clash:
                epc, existing = next(iter(sorted(clash.items())))
                raise DuplicateEpc(epc, existing.lot_id) from e
            taken = await self.lots_by_id([lot.lot_id for lot in lots])
            raise DuplicateId("lot", sorted(taken)[0] if taken else lots[0].lot_id) from e

    async def lots_by_id(self, lot_ids: Iterable[str], *, lock: bool = False) -> dict[str, Lot]:
        out: dict[str, Lot] = {}
        for chunk in _chunks(sorted(set(lot_ids))):
            q = select(t.lot).where(t.lot.c.lot_id.in_(chunk)).order_by(t.lot.c.lot_id)
            if lock and self.dialect == "postgresql":
                q = q.with_for_update()  # in lot_id order: batches never deadlock on lots
            rows = await self.conn.execute(q)
            out.update((r.lot_id, lot_from_row(r)) for r in rows)
        return out

    async def lots_by_epc(self, epcs: Iterable[str]) -> dict[str, Lot]:
        out: dict[str, Lot] = {}
        for chunk in _chunks(sorted(set(epcs))):
            rows = await self.conn.execute(select(t.lot).where(t.lot.c.epc.in_(chunk)))
            out.update((r.epc, lot_from_row(r)) for r in rows)
        return out

    async def update_lots(self, lots: Sequence[Lot]) -> None:
        if not lots:
            return
        stmt = (
            update(t.lot)
            .where(t.lot.c.lot_id == _bind("b_lot_id"))
            .values(
                quantity=_bind("quantity"),
                site_id=_bind("site_id"),
                zone_id=_bind("zone_id"),
                status=_bind("status"),
                pledged=_bind("pledged"),
                verified=_bind("verified"),
                received_at=_bind("received_at"),
            )
        )
        rows = []
        for lot in lots:
            v = lot_values(lot)
            v["b_lot_id"] = v.pop("lot_id")
            rows.append(v)
        await self.conn.execute(stmt, rows)

    async def lots_of_facility(self, facility_id: str) -> list[Lot]:
        rows = await self.conn.execute(
            select(t.lot).where(t.lot.c.facility_id == facility_id).order_by(t.lot.c.lot_id)
        )
        return [lot_from_row(r) for r in rows]

    async def query_lots(self, f: LotFilter) -> list[Lot]:
        return await self._lots(select(t.lot), t.lot.c, f)

    async def lots_as_of(self, f: LotFilter, as_of: datetime) -> list[Lot]:
        # Each entry row carries its lot's state after the movement: the newest one per lot at
        # `as_of` is the lot then (what replaying the journal gives), picked by the database.
        je = t.journal_entry
        newest = func.row_number().over(partition_by=je.c.lot_id, order_by=je.c.seq.desc()).label("newest")
        inner = select(*(je.c[c] for c in _LOT_COLUMNS), newest).where(
            je.c.facility_id == f.facility_id, je.c.at <= as_of
        )
        if f.lot_id is not None:  # the partition key: narrowed before the window
            inner = inner.where(je.c.lot_id == f.lot_id)
        if f.after is not None:
            inner = inner.where(je.c.lot_id > f.after)
        snap = inner.subquery()
        return await self._lots(select(snap).where(snap.c.newest == 1), snap.c, f)

    async def _lots(self, q: Any, cols: Any, f: LotFilter) -> list[Lot]:
        """`q` (lot rows with the lot table's column names in `cols`) filtered, paged by lot id."""
        for name in ("facility_id", "site_id", "zone_id", "sku_id", "lot_id", "status"):
            value = getattr(f, name)
            if value is not None:
                q = q.where(cols[name] == value)
        if f.after is not None:
            q = q.where(cols.lot_id > f.after)
        q = q.order_by(cols.lot_id)
        if f.limit is not None:
            q = q.limit(f.limit)
        return [lot_from_row(r) for r in await self.conn.execute(q)]

    async def pledges_by_epc(self, epcs: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(list(epcs)):
            rows = await self.conn.execute(select(t.pledge).where(t.pledge.c.epc.in_(chunk)))
            out.update((r.epc, r.facility_id) for r in rows)
        return out

    async def insert_pledges(self, lots: Sequence[Lot], at: datetime) -> None:
        if not lots:
            return
        rows = [
            {"epc": lot.epc, "lot_id": lot.lot_id, "facility_id": lot.facility_id, "pledged_at": at}
            for lot in lots
        ]
        try:
            async with self.conn.begin_nested():  # see insert_lots
                await self.conn.execute(t.pledge.insert(), rows)
        except IntegrityError as e:
            # Two transactions raced to pledge the same goods: the registry's key decided.
            owners = await self.pledges_by_epc([lot.epc for lot in lots])
            for lot in lots:
                if lot.epc in owners:
                    raise DoublePledge(lot.lot_id, lot.epc, owners[lot.epc], lot.facility_id) from e
            raise DoublePledge(lots[0].lot_id, lots[0].epc, "(concurrent)", lots[0].facility_id) from e

    async def journal_head(self, facility_id: str) -> tuple[int, str] | None:
        row = (
            await self.conn.execute(select(t.journal_head).where(t.journal_head.c.facility_id == facility_id))
        ).first()
        return None if row is None else (row.seq, row.hash)

    async def delete_pledges(self, epcs: Sequence[str]) -> None:
        if epcs:
            await self.conn.execute(delete(t.pledge).where(t.pledge.c.epc.in_(list(epcs))))

    async def record_pledge_refusal(
        self, at: datetime, epc: str, lot_id: str | None, requested_by: str, pledged_to: str, detail: str
    ) -> None:
        await self.conn.execute(
            t.pledge_refusal.insert().values(
                at=at,
                epc=epc,
                lot_id=lot_id,
                requested_by=requested_by,
                pledged_to=pledged_to,
                detail=detail,
            )
        )

    async def pledge_refusals(self, epc: str | None = None) -> list[dict[str, Any]]:
        q = select(t.pledge_refusal).order_by(t.pledge_refusal.c.refusal_id)
        if epc is not None:
            q = q.where(t.pledge_refusal.c.epc == epc)
        return [dict(r._mapping) for r in await self.conn.execute(q)]

    # --- journal -------------------------------------------------------------------------------
    async def lock_heads_of_lots(self, lot_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Lock the journal heads of the facilities owning `lot_ids` (sorted order).

        A lot's facility never changes and every writer of a lot holds its facility's head, so
        once these heads are held the lots can be read without row locks (no lock WAL per lot).
        """
        ids = sorted(set(lot_ids))
        owners = select(t.lot.c.facility_id).where(t.lot.c.lot_id.in_(ids)).distinct().scalar_subquery()
        q = (
            select(t.journal_head)
            .where(t.journal_head.c.facility_id.in_(owners))
            .order_by(t.journal_head.c.facility_id)
        )
        if self.dialect == "postgresql":
            q = q.with_for_update()
        return {r.facility_id: (r.seq, r.hash) for r in await self.conn.execute(q)}

    async def lock_heads(self, facility_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        ids = sorted(set(facility_ids))  # one global order: no deadlock between batches
        out: dict[str, tuple[int, str]] = {}
        for chunk in _chunks(ids):
            q = (
                select(t.journal_head)
                .where(t.journal_head.c.facility_id.in_(chunk))
                .order_by(t.journal_head.c.facility_id)
            )
            if self.dialect == "postgresql":
                q = q.with_for_update()
            out.update((r.facility_id, (r.seq, r.hash)) for r in await self.conn.execute(q))
        return out

    async def append_entries(self, entries: Sequence[JournalEntry]) -> None:
        if not entries:
            return
        await self.conn.execute(t.journal_entry.insert(), [entry_values(e) for e in entries])
        heads: dict[str, JournalEntry] = {}
        for e in entries:
            heads[e.facility_id] = e
        await self.conn.execute(
            update(t.journal_head)
            .where(t.journal_head.c.facility_id == _bind("b_facility_id"))
            .values(seq=_bind("seq"), hash=_bind("hash")),
            [{"b_facility_id": f, "seq": e.seq, "hash": e.hash} for f, e in heads.items()],
        )

    async def entries(
        self, facility_id: str, *, until: datetime | None = None, batch: int = 5000
    ) -> AsyncIterator[JournalEntry]:
        after = 0
        while True:
            q = (
                select(t.journal_entry)
                .where(t.journal_entry.c.facility_id == facility_id, t.journal_entry.c.seq > after)
                .order_by(t.journal_entry.c.seq)
                .limit(batch)
            )
            rows = (await self.conn.execute(q)).all()
            for r in rows:
                e = entry_from_row(r)
                if until is None or e.at <= until:
                    yield e
            if len(rows) < batch:
                return
            after = rows[-1].seq

    async def movements(self, f: MovementFilter) -> list[JournalEntry]:
        je = t.journal_entry
        q = select(je).where(je.c.facility_id == f.facility_id)
        for col, value in (
            (je.c.lot_id, f.lot_id),
            (je.c.kind, f.kind),
            (je.c.site_id, f.site_id),
            (je.c.zone_id, f.zone_id),
            (je.c.sku_id, f.sku_id),
        ):
            if value is not None:
                q = q.where(col == value)
        if f.since is not None:
            q = q.where(je.c.at >= f.since)
        if f.until is not None:
            q = q.where(je.c.at < f.until)
        if f.after_seq is not None:
            q = q.where(je.c.seq > f.after_seq)
        rows = await self.conn.execute(q.order_by(je.c.seq).limit(f.limit))
        return [entry_from_row(r) for r in rows]

    # --- prices --------------------------------------------------------------------------------
    async def insert_price(self, p: PricePoint) -> None:
        await self.conn.execute(
            t.price.insert().values(
                sku_id=p.sku_id, at=p.at, price=p.price, currency=p.currency, source=p.source
            )
        )

    async def price_history(self, sku_id: str, until: datetime | None, limit: int) -> list[PricePoint]:
        """Newest `limit` observations at or before `until`, returned oldest first."""
        q = select(t.price).where(t.price.c.sku_id == sku_id)
        if until is not None:
            q = q.where(t.price.c.at <= until)
        rows = (
            await self.conn.execute(q.order_by(t.price.c.at.desc(), t.price.c.price_id.desc()).limit(limit))
        ).all()
        return [PricePoint(r.sku_id, r.at, r.price, r.currency, r.source) for r in reversed(rows)]

    async def put_sku_market(self, m: SkuMarket) -> None:
        values = {
            "sku_id": m.sku_id,
            "price": m.price,
            "price_at": m.price_at,
            "sigma": m.sigma,
            "returns": m.returns,
        }
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(t.sku_market)
        await self.conn.execute(
            ins.values(values).on_conflict_do_update(
                index_elements=["sku_id"],
                set_={k: v for k, v in values.items() if k != "sku_id"},
            )
        )

    async def sku_markets(self, sku_ids: Iterable[str]) -> dict[str, SkuMarket]:
        rows = await self.conn.execute(select(t.sku_market).where(t.sku_market.c.sku_id.in_(list(sku_ids))))
        return {r.sku_id: SkuMarket(r.sku_id, r.price, r.price_at, r.sigma, r.returns) for r in rows}

    # --- positions and facility state --------------------------------------------------------
    async def insert_positions(self, rows: Sequence[PositionRow]) -> None:
        if rows:
            await self.conn.execute(t.position.insert(), [r.values() for r in rows])

    async def positions(self, facility_ids: Iterable[str]) -> list[PositionRow]:
        out: list[PositionRow] = []
        for chunk in _chunks(sorted(set(facility_ids))):
            rows = await self.conn.execute(
                select(t.position)
                .where(t.position.c.facility_id.in_(chunk))
                .order_by(t.position.c.facility_id, t.position.c.sku_id)
            )
            out.extend(PositionRow(*r) for r in rows)
        return out

    async def update_position_quantities(self, rows: Sequence[PositionRow]) -> None:
        if rows:
            await self.conn.execute(
                update(t.position)
                .where(and_(t.position.c.facility_id == _bind("b_f"), t.position.c.sku_id == _bind("b_s")))
                .values(pledged_qty=_bind("pledged_qty"), eligible_qty=_bind("eligible_qty")),
                [
                    {
                        "b_f": r.facility_id,
                        "b_s": r.sku_id,
                        "pledged_qty": r.pledged_qty,
                        "eligible_qty": r.eligible_qty,
                    }
                    for r in rows
                ],
            )

    async def update_position_prices(self, rows: Sequence[PositionRow]) -> None:
        if rows:
            await self.conn.execute(
                update(t.position)
                .where(and_(t.position.c.facility_id == _bind("b_f"), t.position.c.sku_id == _bind("b_s")))
                .values(price=_bind("price"), price_at=_bind("price_at"), haircut=_bind("haircut")),
                [
                    {
                        "b_f": r.facility_id,
                        "b_s": r.sku_id,
                        "price": r.price,
                        "price_at": r.price_at,
                        "haircut": r.haircut,
                    }
                    for r in rows
                ],
            )

    async def aged_lots(self, cutoffs: dict[str, datetime]) -> list[Lot]:
        """Lots in status pledged received before their facility's cutoff.

        One indexed query per chunk of facilities, bounded by the latest cutoff, then filtered
        per facility: the cost is the number of aged lots, not the size of the ledger.
        """
        out: list[Lot] = []
        for chunk in _chunks(sorted(cutoffs), 1000):
            latest = max(cutoffs[f] for f in chunk)
            q = select(t.lot).where(
                t.lot.c.facility_id.in_(chunk),
                t.lot.c.status == str(LotStatus.PLEDGED),
                t.lot.c.received_at < latest,
            )
            for r in await self.conn.execute(q):
                lot = lot_from_row(r)
                if lot.received_at is not None and lot.received_at < cutoffs[lot.facility_id]:
                    out.append(lot)
        return out

    async def put_facility_states(self, rows: Sequence[FacilityStateRow]) -> None:
        if not rows:
            return
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(t.facility_state)
        stmt = ins.on_conflict_do_update(
            index_elements=["facility_id"],
            set_={
                "borrowing_base": ins.excluded.borrowing_base,
                "market_value": ins.excluded.market_value,
                "computed_at": ins.excluded.computed_at,
            },
        )
        await self.conn.execute(
            stmt,
            [
                {
                    "facility_id": r.facility_id,
                    "borrowing_base": r.borrowing_base,
                    "market_value": r.market_value,
                    "computed_at": r.computed_at,
                }
                for r in rows
            ],
        )

    async def facility_states(self, facility_ids: Iterable[str]) -> dict[str, FacilityStateRow]:
        rows = await self.conn.execute(
            select(t.facility_state).where(t.facility_state.c.facility_id.in_(list(facility_ids)))
        )
        return {r.facility_id: FacilityStateRow(**dict(r._mapping)) for r in rows}

    async def count(self, table: str) -> int:
        return int(
            (await self.conn.execute(select(func.count()).select_from(t.metadata.tables[table]))).scalar_one()
        )

    async def raw_execute(self, statement: Any, params: Any = None) -> Any:
        """Escape hatch for tests and tools (tamper drills); not used by the service."""
        return await self.conn.execute(statement, params)


_REFERENCE: dict[type, tuple[Any, str]] = {
    Site: (t.site, "site_id"),
    Zone: (t.zone, "zone_id"),
    Sku: (t.sku, "sku_id"),
    Borrower: (t.borrower, "borrower_id"),
}


def _bind(name: str) -> Any:
    return bindparam(name)


def _chunks(items: list[Any], size: int = 5000) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class SqlLedgerStore(LedgerStore):
    """Shared SQL implementation; use `PostgresStore` or `SqliteStore`."""

    dialect = ""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTx]:
        async with self.engine.begin() as conn:
            yield SqlTx(conn, self.dialect)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SqlTx]:
        """SQLite: a transaction already reads one state of the file (one writer at a time)."""
        async with self.transaction() as tx:
            yield tx

    @asynccontextmanager
    async def money_transaction(self) -> AsyncIterator[MoneyTx]:
        async with self.transaction() as tx:
            yield SqlMoneyTx(tx)

    @asynccontextmanager
    async def money_batch(self) -> AsyncIterator[MoneyBatchTx]:
        async with self.money_transaction() as tx:
            yield SerialMoneyBatch(tx)

    async def close(self) -> None:
        await self.engine.dispose()


class PostgresStore(SqlLedgerStore):
    """PostgreSQL, with a first-come-first-served gate in front of the connection pool.

    The pool's own queue lets a newcomer take a connection just returned while a woken waiter
    goes back to the end of the line; under load (64 clients, 20 connections) a few requests
    waited seconds that way. The gate admits as many transactions as the pool has connections,
    in arrival order (asyncio.Semaphore is FIFO), so nobody waits at the pool itself.
    """

    dialect = "postgresql"

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        pool: Any = engine.pool
        self.capacity = max(1, pool.size() + max(0, getattr(pool, "_max_overflow", 0)))
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()  # a semaphore belongs to one loop; tests run several
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.capacity)
        return gate

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTx]:
        async with self._gate(), self.engine.begin() as conn:
            yield SqlTx(conn, self.dialect)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SqlTx]:
        """REPEATABLE READ, READ ONLY: every statement sees the transaction's first snapshot
        (READ COMMITTED, the default, takes a new one per statement). SQLAlchemy resets the
        isolation level when the connection goes back to the pool."""
        async with self._gate(), self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            async with conn.begin():
                yield SqlTx(conn, self.dialect)

    @asynccontextmanager
    async def money_batch(self) -> AsyncIterator[MoneyBatchTx]:
        async with self._gate(), pg_money_batch(self.engine) as tx:
            yield tx


class SqliteStore(SqlLedgerStore):
    dialect = "sqlite"
    concurrent_writes = False  # BEGIN IMMEDIATE: one writer at a time
