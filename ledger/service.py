"""Use cases of the collateral ledger: the only place where transactions begin and end.

Data flows one way: caller -> LedgerService -> pure core (ledger.core) -> store port.

Incremental borrowing base. A movement touches only the lots it names: each lot's contribution
to its facility's (facility, SKU) aggregates (`position`) is subtracted before and added after,
then the facility's BB is recomputed from its few position rows plus the pledged lots that have
aged past the facility's limit (an indexed lookup). A price revalues every position of that SKU
in one pass. `certificate()` recomputes everything from the lots (or, as of a past time, from the
journal) with the same pure functions; the property tests check the two paths agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger.core.borrowing_base import (
    BorrowingBase,
    Certificate,
    SkuExposure,
    borrowing_base,
    certify,
)
from ledger.core.eligibility import static_reason
from ledger.core.errors import (
    CurrencyMismatch,
    DoublePledge,
    DuplicateEpc,
    InvalidReference,
    LedgerError,
    UnknownBorrower,
    UnknownFacility,
    UnknownLot,
    UnknownSite,
    UnknownSku,
    UnknownZone,
)
from ledger.core.haircut import HaircutPolicy, daily_volatility, haircut
from ledger.core.journal import ChainBreak, ChainVerifier, JournalEntry, make_entry
from ledger.core.lot import Lot, LotStatus, Movement, MovementKind, apply_movement
from ledger.core.price import PricePoint
from ledger.core.reference import Borrower, Facility, Site, Sku, Zone
from ledger.store.port import (
    FacilityStateRow,
    LedgerStore,
    LedgerTx,
    LotFilter,
    MovementFilter,
    PositionRow,
    SkuMarket,
)

Clock = Callable[[], datetime]
BaseListener = Callable[[Any, dict[str, BorrowingBase], str, datetime], Awaitable[None]]
ZERO = Decimal(0)
_VERIFY_BATCH = 500  # journal entries read and checked at a time: ~40 ms of the event loop


@dataclass(frozen=True, slots=True)
class LotRegistration:
    """A lot announced to the ledger. `received` registers it as already in the warehouse."""

    lot_id: str
    facility_id: str
    epc: str
    sku_id: str
    quantity: Decimal
    site_id: str
    zone_id: str | None = None
    pledge: bool = False
    received: bool = False
    verified: bool = False
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """One lot's before/after pair inside a batch (before is None for a registration)."""

    before: Lot | None
    after: Lot
    kind: MovementKind
    at: datetime
    evidence: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    entries: tuple[JournalEntry, ...]
    bases: dict[str, BorrowingBase]  # facility id -> BB after the batch


@dataclass(frozen=True, slots=True)
class RevaluationResult:
    sku_id: str
    price: PricePoint
    sigma: Decimal | None
    facilities: int
    bases: dict[str, BorrowingBase]


class LedgerService:
    def __init__(self, store: LedgerStore, clock: Clock, haircut_policy: HaircutPolicy | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = haircut_policy or HaircutPolicy()
        # Facility terms are immutable once created (a change of terms is a new facility), so
        # they are cached per process; the money state (frozen, outstanding) is never cached.
        self._facilities: dict[str, Facility] = {}
        self._listeners: list[BaseListener] = []

    def subscribe(self, listener: BaseListener) -> None:
        """Call `listener(tx, bases, trigger, now)` inside every transaction that changes a BB.

        The credit layer uses it to re-check LTV lines and over-advance in the same transaction
        as the movement or revaluation that moved the borrowing base.
        """
        self._listeners.append(listener)

    async def _notify(
        self, tx: LedgerTx, bases: dict[str, BorrowingBase], trigger: str, now: datetime
    ) -> None:
        if bases:
            for listener in self._listeners:
                await listener(tx, bases, trigger, now)

    def transaction(self) -> Any:
        """A unit of work on the ledger's store, for callers that add their own writes."""
        return self.store.transaction()

    def snapshot(self) -> Any:
        """A read-only unit of work whose reads all see one instant (`LedgerStore.snapshot`)."""
        return self.store.snapshot()

    # --- reference data ------------------------------------------------------------------------
    async def add(self, obj: Site | Zone | Sku | Borrower) -> None:
        """Add reference data; re-adding identical data is a no-op, different data an error."""
        async with self.store.transaction() as tx:
            if isinstance(obj, Zone) and await tx.get_reference(Site, obj.site_id) is None:
                raise UnknownSite(obj.site_id)
            await tx.insert_reference(obj)

    async def get(self, kind: type, ident: str) -> Any:
        async with self.store.transaction() as tx:
            return await tx.get_reference(kind, ident)

    async def list_all(self, kind: type) -> list[Any]:
        async with self.store.transaction() as tx:
            return await tx.list_reference(kind)

    async def create_facility(self, f: Facility) -> BorrowingBase:
        """Create a facility with a position row per financed SKU; checks every reference."""
        async with self.store.transaction() as tx:
            return await self.create_facility_in(tx, f)

    async def create_facility_in(self, tx: LedgerTx, f: Facility) -> BorrowingBase:
        """`create_facility` inside a caller's transaction (the credit layer adds its state)."""
        now = self.clock()
        if await tx.get_reference(Borrower, f.borrower_id) is None:
            raise UnknownBorrower(f.borrower_id)
        for site_id in f.approved_sites:
            if await tx.get_reference(Site, site_id) is None:
                raise UnknownSite(site_id)
        markets = await tx.sku_markets(f.terms)
        rows = []
        for sku_id in sorted(f.terms):
            sku = await tx.get_reference(Sku, sku_id)
            if sku is None:
                raise UnknownSku(sku_id)
            f.check_sku_currency(sku)
            m = markets.get(sku_id)
            rows.append(
                PositionRow(
                    f.facility_id,
                    sku_id,
                    ZERO,
                    ZERO,
                    m.price if m else None,
                    m.price_at if m else None,
                    self._haircut(f, m.sigma if m else None),
                )
            )
        await tx.insert_facility(f, now)
        await tx.insert_positions(rows)
        bases = await self._refresh_states(tx, {f.facility_id: f}, now)
        return bases[f.facility_id]

    async def facility(self, facility_id: str) -> Facility:
        """The facility's terms, from this service's cache (a transaction only on a miss)."""
        found = self._facilities.get(facility_id)
        if found is not None:
            return found
        async with self.store.transaction() as tx:
            return await self._facility(tx, facility_id)

    async def facility_ids(self) -> list[str]:
        async with self.store.transaction() as tx:
            return await tx.list_facility_ids()

    # --- lots ------------------------------------------------------------------------------------
    async def register_lots(self, regs: Sequence[LotRegistration]) -> BatchResult:
        """Register lots (expected, or received), optionally pledging them in the same step.

        A duplicate EPC is refused; an EPC already pledged to another facility is refused as a
        double pledge and the refusal is recorded (in its own transaction, since this one fails).
        """
        now = self.clock()
        try:
            async with self.store.transaction() as tx:
                lots = await self._new_lots(tx, regs, now)
                changes = [
                    Change(None, lot, MovementKind.REGISTRATION, now, reg.evidence)
                    for reg, lot in zip(regs, lots, strict=True)
                ]
                return await self._commit(tx, changes, now)
        except DoublePledge as e:
            await self._record_refusal(e, now)
            raise

    async def pledge(self, facility_id: str, lot_ids: Sequence[str]) -> BatchResult:
        """Pledge registered lots of `facility_id` to it (the pledge registry refuses doubles)."""
        now = self.clock()
        try:
            async with self.store.transaction() as tx:
                await self._facility(tx, facility_id)
                lots = await tx.lots_by_id(lot_ids, lock=True)
                changes = []
                for lot_id in lot_ids:
                    lot = lots.get(lot_id)
                    if lot is None or lot.facility_id != facility_id:
                        raise UnknownLot(lot_id)
                    changes.append(
                        Change(
                            lot,
                            apply_movement(lot, Movement(MovementKind.PLEDGE, lot.lot_id, now)),
                            MovementKind.PLEDGE,
                            now,
                        )
                    )
                return await self._commit(tx, changes, now)
        except DoublePledge as e:
            await self._record_refusal(e, now)
            raise

    async def apply(self, movements: Sequence[Movement], trigger: str = "movement") -> BatchResult:
        """Apply movements in order, atomically: all of them or none (typed error)."""
        async with self.store.transaction() as tx:
            return await self.apply_in(tx, movements, trigger)

    async def apply_in(
        self, tx: LedgerTx, movements: Sequence[Movement], trigger: str = "movement"
    ) -> BatchResult:
        """`apply` inside a caller's transaction (the gateway commits evidence with it)."""
        now = self.clock()
        lot_ids = [m.lot_id for m in movements]
        heads = await tx.lock_heads_of_lots(lot_ids)
        current = await tx.lots_by_id(lot_ids)
        movements = await self._locate(tx, movements)
        changes = []
        for mv in movements:
            lot = current.get(mv.lot_id)
            if lot is None:
                raise UnknownLot(mv.lot_id)
            after = apply_movement(lot, mv)
            changes.append(Change(lot, after, mv.kind, mv.at, mv.evidence, mv.reason))
            current[mv.lot_id] = after
        return await self._commit(tx, changes, now, trigger, heads)

    async def lots_by_epc(self, epcs: Iterable[str]) -> dict[str, Lot]:
        async with self.store.transaction() as tx:
            return await tx.lots_by_epc(epcs)

    async def lot(self, lot_id: str) -> Lot:
        async with self.store.transaction() as tx:
            found = (await tx.lots_by_id([lot_id])).get(lot_id)
        if found is None:
            raise UnknownLot(lot_id)
        return found

    async def pledge_refusals(self, epc: str | None = None) -> list[dict[str, Any]]:
        async with self.store.transaction() as tx:
            return await tx.pledge_refusals(epc)

    # --- prices ----------------------------------------------------------------------------------
    async def record_price(self, point: PricePoint) -> RevaluationResult:
        """Store a price and revalue every facility holding the SKU in one set-based pass."""
        now = self.clock()
        async with self.store.transaction() as tx:
            # The SKU's row locked first: two prices of one SKU at once each read the history
            # without the other's point, and the later commit would set the market (and every
            # position) to its own view, possibly the older quote.
            sku = await tx.get_reference(Sku, point.sku_id, lock=True)
            if sku is None:
                raise UnknownSku(point.sku_id)
            if sku.currency != point.currency:
                raise CurrencyMismatch(sku.currency, point.currency, f"price of SKU {sku.sku_id}")
            if point.at > now:
                raise InvalidReference(
                    f"price of {sku.sku_id} is stamped {point.at.isoformat()}, after now "
                    f"({now.isoformat()}): "
                    "a price cannot come from the future"
                )
            await tx.insert_price(point)
            history = await tx.price_history(point.sku_id, None, self.policy.window + 1)
            latest = history[-1]
            sigma = daily_volatility([p.price for p in history], self.policy)
            await tx.put_sku_market(
                SkuMarket(sku.sku_id, latest.price, latest.at, sigma, max(0, len(history) - 1))
            )
            facility_ids = await tx.facilities_with_sku(sku.sku_id)
            await tx.lock_heads(facility_ids)
            facilities = await self._load_facilities(tx, facility_ids)
            rows = [
                replace(
                    r,
                    price=latest.price,
                    price_at=latest.at,
                    haircut=self._haircut(facilities[r.facility_id], sigma),
                )
                for r in await tx.positions(facility_ids)
                if r.sku_id == sku.sku_id
            ]
            await tx.update_position_prices(rows)
            bases = await self._refresh_states(tx, facilities, now)
            await self._notify(tx, bases, "revaluation", now)
        return RevaluationResult(sku.sku_id, latest, sigma, len(facility_ids), bases)

    async def price_history(
        self, sku_id: str, until: datetime | None = None, limit: int = 1000
    ) -> list[PricePoint]:
        async with self.store.transaction() as tx:
            return await tx.price_history(sku_id, until, limit)

    # --- queries ---------------------------------------------------------------------------------
    async def bases_in(self, tx: LedgerTx, facility_ids: Iterable[str]) -> dict[str, BorrowingBase]:
        """Current BBs of facilities inside a caller's transaction."""
        facilities = await self._load_facilities(tx, facility_ids)
        return await self._bases(tx, facilities, self.clock())

    async def facility_in(self, tx: LedgerTx, facility_id: str) -> Facility:
        return await self._facility(tx, facility_id)

    async def facilities_in(self, tx: LedgerTx, facility_ids: Iterable[str]) -> dict[str, Facility]:
        """The facilities of `facility_ids` that exist (unknown ids are absent), in one read."""
        return await self._load_facilities(tx, facility_ids)

    async def borrowing_base(self, facility_id: str) -> BorrowingBase:
        """The current BB from the incrementally maintained positions (cheap)."""
        now = self.clock()
        async with self.store.transaction() as tx:
            f = await self._facility(tx, facility_id)
            return (await self._bases(tx, {facility_id: f}, now))[facility_id]

    async def certificate(self, facility_id: str, as_of: datetime | None = None) -> Certificate:
        """Full eligibility breakdown; with `as_of`, rebuilt from the journal and price history."""
        now = self.clock()
        async with self.store.transaction() as tx:
            f = await self._facility(tx, facility_id)
            if as_of is None or as_of >= now:
                when = now
                lots = await tx.lots_of_facility(facility_id)
            else:
                when = as_of
                lots = await tx.lots_as_of(LotFilter(facility_id, limit=None), as_of)
            prices: dict[str, PricePoint | None] = {}
            haircuts: dict[str, Decimal] = {}
            for sku_id in f.terms:
                hist = await tx.price_history(sku_id, when, self.policy.window + 1)
                prices[sku_id] = hist[-1] if hist else None
                haircuts[sku_id] = self._haircut(f, daily_volatility([p.price for p in hist], self.policy))
        return certify(f, lots, prices, haircuts, when)

    async def positions(
        self,
        *,
        facility_id: str | None = None,
        site_id: str | None = None,
        zone_id: str | None = None,
        sku_id: str | None = None,
        lot_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 100,
        as_of: datetime | None = None,
    ) -> list[Lot]:
        """Lots matching the filters, keyset-paginated by lot id; `as_of`: as they stood then,
        from the journal (each lot's newest entry at that time, picked by the store)."""
        if limit <= 0 or limit > 10_000:
            raise InvalidReference("limit must be between 1 and 10000")
        f = LotFilter(facility_id, site_id, zone_id, sku_id, lot_id, status, after, limit)
        async with self.store.transaction() as tx:
            if as_of is None:
                return await tx.query_lots(f)
            if facility_id is None:
                raise InvalidReference("positions as of a past time need a facility")
            await self._facility(tx, facility_id)
            return await tx.lots_as_of(f, as_of)

    async def movements(self, flt: MovementFilter) -> list[JournalEntry]:
        if flt.limit <= 0 or flt.limit > 10_000:
            raise InvalidReference("limit must be between 1 and 10000")
        async with self.store.transaction() as tx:
            await self._facility(tx, flt.facility_id)
            return await tx.movements(flt)

    async def verify(self, facility_id: str) -> ChainBreak | None:
        """Verify a facility's hash chain end to end, and that it ends where its head says.

        The head check catches the deletion of the newest entries, which the chain alone cannot.
        One snapshot (entries appended meanwhile are in neither the entries nor the head), read
        and checked 500 entries at a time: bounded memory, and other requests run between the
        reads.
        """
        verifier, broken = ChainVerifier(facility_id), None
        async with self.store.snapshot() as tx:
            await self._facility(tx, facility_id)
            head = await tx.journal_head(facility_id)
            entries = tx.entries(facility_id, batch=_VERIFY_BATCH)
            async with aclosing(entries):
                async for e in entries:
                    broken = verifier.check(e)
                    if broken is not None:
                        break
        if broken is not None or head is None:
            return broken
        last_seq, last_hash = verifier.last
        if (last_seq, last_hash) != head:
            return ChainBreak(
                facility_id,
                min(last_seq, head[0]) + 1,
                f"the journal ends at entry {last_seq} but its head records entry {head[0]}: "
                "entries were deleted or the head was altered",
            )
        return None

    # --- internals -------------------------------------------------------------------------------
    async def _facility(self, tx: LedgerTx, facility_id: str) -> Facility:
        found = (await self._load_facilities(tx, [facility_id])).get(facility_id)
        if found is None:
            raise UnknownFacility(facility_id)
        return found

    async def _load_facilities(self, tx: LedgerTx, ids: Iterable[str]) -> dict[str, Facility]:
        wanted = set(ids)
        missing = wanted - self._facilities.keys()
        if missing:
            self._facilities.update(await tx.get_facilities(missing))
        return {fid: self._facilities[fid] for fid in wanted if fid in self._facilities}

    def _haircut(self, f: Facility, sigma: Decimal | None) -> Decimal:
        return haircut(sigma, f.liquidation_horizon_days, f.haircut_floor, f.haircut_cap, self.policy)

    async def _locate(self, tx: LedgerTx, movements: Sequence[Movement]) -> list[Movement]:
        """Check every named site and zone; a zone named without a site brings its own site."""
        await self._check_locations(tx, {(m.site_id, m.zone_id) for m in movements})
        zone_sites: dict[str, str] = {}
        for zone_id in {m.zone_id for m in movements if m.zone_id is not None and m.site_id is None}:
            zone = await tx.get_reference(Zone, zone_id)
            zone_sites[zone_id] = zone.site_id
        return [
            replace(m, site_id=zone_sites[m.zone_id]) if m.zone_id in zone_sites and m.site_id is None else m
            for m in movements
        ]

    async def _check_locations(self, tx: LedgerTx, pairs: set[tuple[str | None, str | None]]) -> None:
        """Each distinct (site, zone) of a batch is checked once: both exist, zone in site."""
        for site_id in sorted({p[0] for p in pairs if p[0] is not None}):
            if await tx.get_reference(Site, site_id) is None:
                raise UnknownSite(site_id)
        for in_site, zone_id in sorted(pairs, key=str):
            if zone_id is None:
                continue
            zone = await tx.get_reference(Zone, zone_id)
            if zone is None or (in_site is not None and zone.site_id != in_site):
                raise UnknownZone(zone_id)

    async def _new_lots(self, tx: LedgerTx, regs: Sequence[LotRegistration], now: datetime) -> list[Lot]:
        facilities = await self._load_facilities(tx, {r.facility_id for r in regs})
        epcs = [r.epc for r in regs]
        if len(set(epcs)) != len(epcs):
            dup = next(e for e in epcs if epcs.count(e) > 1)
            raise DuplicateEpc(dup, "(same request)")
        existing = await tx.lots_by_epc(epcs)
        pledges = await tx.pledges_by_epc(epcs)
        for sku_id in sorted({r.sku_id for r in regs}):
            if await tx.get_reference(Sku, sku_id) is None:
                raise UnknownSku(sku_id)
        await self._check_locations(tx, {(r.site_id, r.zone_id) for r in regs})
        lots = []
        for r in regs:
            if r.facility_id not in facilities:
                raise UnknownFacility(r.facility_id)
            if r.epc in pledges and pledges[r.epc] != r.facility_id:
                raise DoublePledge(existing[r.epc].lot_id, r.epc, pledges[r.epc], r.facility_id)
            if r.epc in existing:
                raise DuplicateEpc(r.epc, existing[r.epc].lot_id)
            status = LotStatus.IN_STOCK if r.received else LotStatus.EXPECTED
            if r.received and r.pledge:
                status = LotStatus.PLEDGED
            lots.append(
                Lot(
                    r.lot_id,
                    r.facility_id,
                    r.epc,
                    r.sku_id,
                    r.quantity,
                    r.site_id,
                    r.zone_id,
                    status,
                    r.pledge,
                    r.verified,
                    now if r.received else None,
                )
            )
        return lots

    async def _record_refusal(self, e: DoublePledge, now: datetime) -> None:
        async with self.store.transaction() as tx:
            await tx.record_pledge_refusal(now, e.epc, e.lot_id, e.requested_by, e.pledged_to, e.message)

    async def _commit(
        self,
        tx: LedgerTx,
        changes: Sequence[Change],
        now: datetime,
        trigger: str = "movement",
        heads: dict[str, tuple[int, str]] | None = None,
    ) -> BatchResult:
        """Journal the changes, update lots, the pledge registry, positions and facility states.

        `heads`: the journal heads already locked by the caller (else they are locked here).
        """
        facility_ids = {c.after.facility_id for c in changes}
        if heads is None:
            heads = await tx.lock_heads(facility_ids)
        heads = {f: h for f, h in heads.items() if f in facility_ids}
        if len(heads) != len(facility_ids):
            raise UnknownFacility(sorted(facility_ids - set(heads))[0])
        facilities = await self._load_facilities(tx, facility_ids)
        entries = []
        for c in changes:
            seq, prev = heads[c.after.facility_id]
            entry = make_entry(prev, seq + 1, c.at, c.kind, c.after, c.evidence, c.reason)
            heads[c.after.facility_id] = (entry.seq, entry.hash)
            entries.append(entry)
        await tx.append_entries(entries)
        await self._write_lots_and_pledges(tx, changes, now)
        rows = await self._apply_position_deltas(tx, changes, facilities)
        moved = {r.facility_id for r in rows}
        # Only a change of a position changes a BB (time-driven changes, ageing and stale prices,
        # are applied when a BB is read): facilities whose lots merely moved zone are not touched.
        bases = await self._refresh_states(tx, {f: facilities[f] for f in moved}, now, rows)
        await self._notify(tx, bases, trigger, now)
        return BatchResult(tuple(entries), bases)

    async def _write_lots_and_pledges(self, tx: LedgerTx, changes: Sequence[Change], now: datetime) -> None:
        final: dict[str, Lot] = {}
        first: dict[str, Lot | None] = {}
        for c in changes:
            first.setdefault(c.after.lot_id, c.before)
            final[c.after.lot_id] = c.after
        await tx.insert_lots([lot for lot_id, lot in final.items() if first[lot_id] is None])
        await tx.update_lots([lot for lot_id, lot in final.items() if first[lot_id] is not None])
        was_pledged = {lot_id: bool(b is not None and b.pledged) for lot_id, b in first.items()}
        newly = [lot for lot_id, lot in final.items() if lot.pledged and not was_pledged[lot_id]]
        ended = [lot.epc for lot_id, lot in final.items() if not lot.pledged and was_pledged[lot_id]]
        if newly:
            taken = await tx.pledges_by_epc([lot.epc for lot in newly])
            for lot in newly:
                if lot.epc in taken and taken[lot.epc] != lot.facility_id:
                    raise DoublePledge(lot.lot_id, lot.epc, taken[lot.epc], lot.facility_id)
        await tx.delete_pledges(ended)
        await tx.insert_pledges(newly, now)

    async def _apply_position_deltas(
        self, tx: LedgerTx, changes: Sequence[Change], facilities: dict[str, Facility]
    ) -> list[PositionRow]:
        """Add each lot's after-contribution minus its before.

        Returns every position row of the facilities that changed, as they are after the
        change, so that their BBs are computed without reading the rows again.
        """
        delta: dict[tuple[str, str], list[Decimal]] = {}
        for c in changes:
            for lot, sign in ((c.before, -1), (c.after, 1)):
                if lot is None:
                    continue
                pledged, eligible = _contribution(lot, facilities[lot.facility_id])
                if pledged or eligible:
                    d = delta.setdefault((lot.facility_id, lot.sku_id), [ZERO, ZERO])
                    d[0] += sign * pledged
                    d[1] += sign * eligible
        delta = {k: d for k, d in delta.items() if d[0] or d[1]}
        if not delta:
            return []
        rows = {(r.facility_id, r.sku_id): r for r in await tx.positions({k[0] for k in delta})}
        changed = []
        for key, (dp, de) in delta.items():
            if key in rows:
                r = rows[key]
                rows[key] = replace(r, pledged_qty=r.pledged_qty + dp, eligible_qty=r.eligible_qty + de)
                changed.append(rows[key])
        await tx.update_position_quantities(changed)
        moved = {r.facility_id for r in changed}
        return [r for r in rows.values() if r.facility_id in moved]

    async def _bases(
        self,
        tx: LedgerTx,
        facilities: dict[str, Facility],
        now: datetime,
        rows: Sequence[PositionRow] | None = None,
    ) -> dict[str, BorrowingBase]:
        """BBs at `now` from position rows (read unless given) and the aged lots."""
        cutoffs = {fid: now - timedelta(days=f.max_age_days) for fid, f in facilities.items()}
        aged_lots = await tx.aged_lots(cutoffs)
        if rows is None:
            rows = await tx.positions(facilities)
        return bases_from(facilities, rows, aged_lots, now)

    async def _refresh_states(
        self,
        tx: LedgerTx,
        facilities: dict[str, Facility],
        now: datetime,
        rows: Sequence[PositionRow] | None = None,
    ) -> dict[str, BorrowingBase]:
        bases = await self._bases(tx, facilities, now, rows)
        await tx.put_facility_states(
            [FacilityStateRow(fid, b.borrowing_base, b.market_value, now) for fid, b in bases.items()]
        )
        return bases


def bases_from(
    facilities: dict[str, Facility], rows: Sequence[PositionRow], aged_lots: Sequence[Lot], now: datetime
) -> dict[str, BorrowingBase]:
    """BBs at `now` from position rows and the facilities' aged lots (pledged, received before
    each facility's max-age cutoff): pure, so the money desk can use what it read in one go."""
    aged: dict[tuple[str, str], Decimal] = {}
    for lot in aged_lots:
        if static_reason(lot, facilities[lot.facility_id]) is None:
            key = (lot.facility_id, lot.sku_id)
            aged[key] = aged.get(key, ZERO) + lot.quantity
    by_facility: dict[str, list[SkuExposure]] = {fid: [] for fid in facilities}
    for r in rows:
        f = facilities[r.facility_id]
        terms = f.terms.get(r.sku_id)
        if terms is None:
            continue
        stale = r.price_at is None or (now - r.price_at).total_seconds() > f.max_price_age_s
        eligible = ZERO if stale else r.eligible_qty - aged.get((r.facility_id, r.sku_id), ZERO)
        by_facility[r.facility_id].append(
            SkuExposure(
                r.sku_id,
                r.pledged_qty,
                eligible,
                r.price,
                r.haircut,
                terms.advance_rate,
                terms.concentration_limit,
            )
        )
    return {fid: borrowing_base(xs, facilities[fid].reserves) for fid, xs in by_facility.items()}


def _contribution(lot: Lot, f: Facility) -> tuple[Decimal, Decimal]:
    """A lot's share of its (facility, SKU) position: (pledged qty, statically eligible qty)."""
    pledged = lot.quantity if lot.pledged and lot.in_warehouse else ZERO
    eligible = lot.quantity if static_reason(lot, f) is None else ZERO
    return pledged, eligible


__all__ = [
    "BatchResult",
    "Change",
    "LedgerError",
    "LedgerService",
    "LotRegistration",
    "RevaluationResult",
]
