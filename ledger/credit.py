"""Use cases of the credit facility: open, draw, repay, accrue, release, statement, lines.

Every money operation runs in one transaction that first locks the facility's `credit_state`
row (SELECT ... FOR UPDATE on PostgreSQL; SQLite has a single writer), then accrues interest up
to today, reads the borrowing base, checks the rules of the pure core (ledger.core.credit_line)
and books balanced postings, updating balances in the same transaction. Two racing drawdowns
therefore see each other's effect and can never together exceed availability.

"Outstanding" is everything owed: principal + accrued interest + fees. Availability, LTV and
over-advance are measured on it (the conservative reading of the contract).

After every drawdown, repayment, movement and revaluation the lines are re-assessed; crossing
the warning line raises a margin call, crossing the liquidation line or an over-advance freezes
drawdowns until cured. Each is a `credit_event` row with its facts, for alerting (later issue).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, cast

from ledger.core.borrowing_base import BorrowingBase
from ledger.core.credit_line import (
    CreditAssessment,
    Trigger,
    assess,
    check_drawdown,
    check_release,
    transitions,
)
from ledger.core.errors import InvalidReference, LedgerError, ReleaseRefused, UnknownFacility, UnknownLot
from ledger.core.interest import daily_interest
from ledger.core.lot import Lot, LotStatus, Movement, MovementKind
from ledger.core.money import decimal_text, money_text
from ledger.core.posting import (
    Balances,
    Posting,
    drawdown_posting,
    interest_accrual_posting,
    repayment_postings,
)
from ledger.core.pricing import RateBreakdown, RatePlan, facility_rate
from ledger.core.reference import Facility
from ledger.core.statement import Statement, statement
from ledger.money_desk import Decision, MoneyDesk
from ledger.service import Clock, LedgerService, bases_from
from ledger.store.port import (
    MONEY_STATE_COLUMNS,
    LotFilter,
    MoneyState,
    MoneyWrites,
    RequestKey,
    StoredResponse,
)

ZERO = Decimal(0)
_BEFORE_ALL = datetime.min.replace(tzinfo=UTC)  # sorts lots never received first
_LOT_PAGE = 10_000  # pledged lots read per query when a release names a SKU and a quantity


@dataclass(frozen=True, slots=True)
class FacilitySummary:
    """What an SME and a collateral manager see of a facility, at `as_of`."""

    facility_id: str
    borrower_id: str
    currency: str
    status: str
    commitment: Decimal
    borrowing_base: Decimal
    market_value: Decimal
    principal: Decimal
    accrued_interest: Decimal
    fees: Decimal
    outstanding: Decimal
    availability: Decimal
    ltv: Decimal | None
    state: str
    frozen: bool
    over_advance: Decimal
    margin_call_cash: Decimal | None
    margin_call_goods_value: Decimal | None
    rate: RateBreakdown
    as_of: datetime


@dataclass(frozen=True, slots=True)
class MoneyResult:
    posting: Posting
    summary: FacilitySummary


@dataclass(slots=True)
class AccrualRun:
    """What one `accrue_all` did: facilities accrued, interest postings booked."""

    facilities: int = 0
    postings: int = 0


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    release_id: str
    lot_ids: tuple[str, ...]
    quantity: Decimal
    bb_after: Decimal
    outstanding: Decimal
    summary: FacilitySummary


class CreditService:
    def __init__(
        self,
        ledger: LedgerService,
        clock: Clock,
        rate_plan: RatePlan,
        *,
        max_batches: int = 4,
        max_orders: int = 64,
        min_orders_busy: int = 1,
    ) -> None:
        """`max_batches` money batches run at once, of up to `max_orders` requests each; while
        one runs, another starts only with `min_orders_busy` requests waiting
        (ledger/money_desk.py)."""
        self.ledger = ledger
        self.clock = clock
        self.rate_plan = rate_plan
        self.desk = MoneyDesk(
            ledger.store,
            clock,
            max_batches=max_batches,
            max_orders=max_orders,
            min_orders_busy=min_orders_busy,
        )
        ledger.subscribe(self._reassess)

    # --- facilities ------------------------------------------------------------------------------
    async def open_facility(self, f: Facility, tier: str) -> FacilitySummary:
        """Create the facility in the collateral ledger and its credit state, priced cost-plus."""
        rate = facility_rate(self.rate_plan, tier)
        now = self.clock()
        async with self.ledger.transaction() as tx:
            bb = await self.ledger.create_facility_in(tx, f)
            await tx.insert_credit_state(
                {
                    "facility_id": f.facility_id,
                    "status": f.status,
                    "tier": tier,
                    "funding_cost": rate.funding_cost,
                    "operating_cost": rate.operating_cost,
                    "risk_premium": rate.risk_premium,
                    "margin": rate.margin,
                    "annual_rate": rate.total,
                    "accrued_through": now.date().isoformat(),
                    "state": "ok",
                    "frozen": False,
                    "last_outstanding": ZERO,
                    "last_bb": bb.borrowing_base,
                    "last_market_value": bb.market_value,
                    "posting_seq": 0,
                }
            )
            return await self._summary_in(tx, f.facility_id, now)

    async def facility_ids(self) -> list[str]:
        """Facilities with a credit line (ledger-only facilities have none)."""
        async with self.ledger.transaction() as tx:
            ids = await tx.list_facility_ids()
            return sorted((await tx.credit_states(ids)).keys())

    async def summary(self, facility_id: str) -> FacilitySummary:
        async with self.ledger.transaction() as tx:
            return await self._summary_in(tx, facility_id, self.clock())

    async def summaries(self, facility_ids: Sequence[str]) -> list[FacilitySummary]:
        """`summary` of each facility with a credit line, in the order given (others skipped):
        one transaction and one read per table for all of them, not a transaction each."""
        async with self.ledger.transaction() as tx:
            return await self._summaries_in(tx, facility_ids, self.clock())

    # --- money -----------------------------------------------------------------------------------
    async def draw(
        self, facility_id: str, amount: Decimal, idempotency_key: str | None = None
    ) -> MoneyResult:
        """Lend `amount` now if the facility is active, not frozen and it fits the availability."""
        return cast(MoneyResult, await self._money(facility_id, None, _drawdown(amount, idempotency_key)))

    async def repay(
        self, facility_id: str, amount: Decimal, idempotency_key: str | None = None
    ) -> MoneyResult:
        """Repay: interest first, then fees, then principal; more than owed is refused."""
        return cast(MoneyResult, await self._money(facility_id, None, _repayment(amount, idempotency_key)))

    async def draw_keyed(self, facility_id: str, amount: Decimal, request: KeyedRequest) -> Answer:
        """`draw` once per Idempotency-Key: the answer (or refusal) commits with the money."""
        return cast(Answer, await self._money(facility_id, request, _drawdown(amount, request.posting_key)))

    async def repay_keyed(self, facility_id: str, amount: Decimal, request: KeyedRequest) -> Answer:
        """`repay` once per Idempotency-Key: the answer (or refusal) commits with the money."""
        return cast(Answer, await self._money(facility_id, request, _repayment(amount, request.posting_key)))

    async def _money(
        self, facility_id: str, request: KeyedRequest | None, operation: _Operation
    ) -> MoneyResult | Answer:
        """One drawdown or repayment, through the money desk (group commit, ledger/money_desk.py).

        The desk claims the key and locks and reads the facility's state; `_MoneyOrder.decide`
        decides in memory (accrue interest to now, apply the rules of the pure core, settle the
        lines); the desk books it with the rest of its batch. A refusal writes nothing but the
        stored answer of a keyed request.
        """
        f = await self.ledger.facility(facility_id)
        return cast(MoneyResult | Answer, await self.desk.run(_MoneyOrder(self, f, request, operation)))

    def _decide(
        self, f: Facility, money: MoneyState, operation: _Operation, now: datetime
    ) -> tuple[MoneyResult, MoneyWrites]:
        """What a money operation books, from the state read under the lock (no I/O)."""
        st = dict(money.state)
        bal = (
            Balances(f.currency, f.facility_id, money.balances)
            if money.balances
            else Balances(f.currency, f.facility_id)
        )
        bb = bases_from({f.facility_id: f}, money.positions, money.aged_lots, now)[f.facility_id]
        postings = _accruals(st, f, bal.principal, now)
        for p in postings:
            bal = bal.apply(p)
        posting, trigger = operation(self._pid(), f, st, bal, bb, now)
        postings.append(posting)
        bal = bal.apply(posting)
        changed = {a: v for a, v in bal.amounts.items() if money.balances.get(a) != v}
        first_seq = st["posting_seq"] + 1
        st["posting_seq"] += len(postings)
        events, assessed = self._settle_state(f, st, bb, bal, trigger, now)
        writes = MoneyWrites(
            f.facility_id, postings, first_seq, changed, {c: st[c] for c in MONEY_STATE_COLUMNS}, events
        )
        return MoneyResult(posting, _summary(f, st, bb, bal, now, assessed)), writes

    async def accrue(self, facility_id: str) -> FacilitySummary:
        """Book interest for every whole day not yet accrued, then re-check the lines (interest
        raises the outstanding: crossing a line is an event with trigger "interest_accrual").
        Money operations accrue first too; the daily job (`accrue_all`) books the idle ones, so
        that a closed day's interest is on the books, and in its statement, once the day is over."""
        now = self.clock()
        async with self.ledger.transaction() as tx:
            await self._accrue_locked(tx, facility_id, now)
            return await self._summary_in(tx, facility_id, now)

    async def accrue_all(self) -> AccrualRun:
        """`accrue` every facility not yet accrued through today, each in its own transaction.
        Idempotent: a second run the same day (another API process's) finds nothing to do."""
        today = self.clock().date()
        async with self.ledger.transaction() as tx:
            states = await tx.credit_states(await tx.list_facility_ids())
        due = sorted(f for f, st in states.items() if date.fromisoformat(st["accrued_through"]) < today)
        run = AccrualRun()
        for facility_id in due:
            now = self.clock()
            async with self.ledger.transaction() as tx:
                booked = await self._accrue_locked(tx, facility_id, now)
            run.facilities += 1
            run.postings += booked
        return run

    async def forget_request_keys(self, retention: timedelta, chunk: int = 10_000) -> int:
        """Forget the stored answers of Idempotency-Keys older than `retention`, `chunk` at a time
        (a transaction each); how many. A key used again after that is a new request (its
        posting key still cannot book money twice: IdempotencyConflict)."""
        before, forgotten = self.clock() - retention, 0
        while True:
            async with self.ledger.transaction() as tx:
                n = await tx.forget_requests(before, chunk)
            forgotten += n
            if n < chunk:
                return forgotten

    async def _accrue_locked(self, tx: Any, facility_id: str, now: datetime) -> int:
        """Lock the facility, book its whole days of interest, re-check its lines if any was
        booked; the number of interest postings."""
        st = await tx.lock_credit_state(facility_id)
        if st is None:
            raise UnknownFacility(facility_id)
        f = await self.ledger.facility_in(tx, facility_id)
        booked = await self._accrue_in(tx, st, f, now)
        if booked:
            await self._reassess(tx, await self.ledger.bases_in(tx, [facility_id]), "interest_accrual", now)
        return booked

    # --- releases --------------------------------------------------------------------------------
    async def release(
        self,
        facility_id: str,
        lot_ids: Sequence[str] | None = None,
        sku_id: str | None = None,
        quantity: Decimal | None = None,
    ) -> ReleaseResult:
        """Authorise lots to leave if the BB after their release still covers the outstanding.

        Either `lot_ids`, or `sku_id` + `quantity` (oldest pledged lots of that SKU first, until
        the quantity is covered). Refused: ReleaseRefused with the amount to repay first.
        """
        return cast(ReleaseResult, await self._release(facility_id, lot_ids, sku_id, quantity, None))

    async def release_keyed(
        self,
        facility_id: str,
        lot_ids: Sequence[str] | None,
        sku_id: str | None,
        quantity: Decimal | None,
        request: KeyedRequest,
    ) -> Answer:
        """`release` once per Idempotency-Key: the answer (or refusal) commits with the release."""
        return cast(Answer, await self._release(facility_id, lot_ids, sku_id, quantity, request))

    async def _release(
        self,
        facility_id: str,
        lot_ids: Sequence[str] | None,
        sku_id: str | None,
        quantity: Decimal | None,
        request: KeyedRequest | None,
    ) -> ReleaseResult | Answer:
        now = self.clock()
        release_id = f"R-{uuid.uuid4().hex[:16]}"
        refused: LedgerError | None = None
        async with self.ledger.transaction() as tx:
            if request is not None:
                replay = await tx.claim_request(request.key, now)
                if replay is not None:
                    return Answer(replay, replayed=True)
            try:
                async with tx.savepoint():  # a refusal undoes the authorisations, keeps the claim
                    result = await self._authorise(
                        tx, facility_id, lot_ids, sku_id, quantity, release_id, now
                    )
            except LedgerError as e:
                refused = e
                if isinstance(e, ReleaseRefused):
                    await tx.insert_credit_events(
                        [
                            _event_row(
                                facility_id,
                                now,
                                "release_refused",
                                "release",
                                {
                                    "release_id": release_id,
                                    "repay_first": f"{e.repay_first:f}",  # already at the minor unit (_up)
                                    "reason": e.message,
                                },
                            )
                        ]
                    )
                if request is not None:
                    refusal = request.refuse(e)
                    await tx.store_response(request.key, refusal)
                    return Answer(refusal, replayed=False)
            else:
                if request is not None:
                    response = request.answer(result)
                    await tx.store_response(request.key, response)
                    return Answer(response, replayed=False)
                return result
        assert refused is not None
        raise refused

    async def _authorise(
        self,
        tx: Any,
        facility_id: str,
        lot_ids: Sequence[str] | None,
        sku_id: str | None,
        quantity: Decimal | None,
        release_id: str,
        now: datetime,
    ) -> ReleaseResult:
        _st, f = await self._lock(tx, facility_id, now)
        lots = await self._pick_lots(tx, f, lot_ids, sku_id, quantity)
        moves = [
            Movement(
                MovementKind.RELEASE_AUTHORISATION,
                lot.lot_id,
                now,
                (release_id,),
                reason="release requested by borrower",
            )
            for lot in lots
        ]
        await self.ledger.apply_in(tx, moves, trigger="release")
        bb_after = (await self.ledger.bases_in(tx, [facility_id]))[facility_id].borrowing_base
        outstanding = (await self._balances(tx, f)).total_owed
        check_release(outstanding, bb_after, facility_id, f.currency)
        await tx.insert_release(
            {
                "release_id": release_id,
                "facility_id": facility_id,
                "at": now,
                "status": "approved",
                "lot_ids": [lot.lot_id for lot in lots],
                "bb_after": bb_after,
                "outstanding": outstanding,
                "repay_first": ZERO,
            }
        )
        await tx.insert_credit_events(
            [
                _event_row(
                    facility_id,
                    now,
                    "release_approved",
                    "release",
                    {
                        "release_id": release_id,
                        "lot_ids": [lot.lot_id for lot in lots],
                        "bb_after": money_text(bb_after, f.currency),
                        "outstanding": money_text(outstanding, f.currency),
                    },
                )
            ]
        )
        return ReleaseResult(
            release_id,
            tuple(lot.lot_id for lot in lots),
            sum((lot.quantity for lot in lots), ZERO),
            bb_after,
            outstanding,
            await self._summary_in(tx, facility_id, now),
        )

    async def _pick_lots(
        self,
        tx: Any,
        f: Facility,
        lot_ids: Sequence[str] | None,
        sku_id: str | None,
        quantity: Decimal | None,
    ) -> list[Any]:
        if lot_ids:
            if len(set(lot_ids)) != len(lot_ids):
                raise InvalidReference("lot_ids must not repeat a lot")
            found = await tx.lots_by_id(lot_ids)
            for lot_id in lot_ids:
                lot = found.get(lot_id)
                if lot is None or lot.facility_id != f.facility_id:
                    raise UnknownLot(lot_id)
            return [found[i] for i in lot_ids]
        if sku_id is None or quantity is None or quantity <= 0:
            raise InvalidReference("a release names lot_ids, or a sku_id and a quantity > 0")
        candidates: list[Lot] = []  # every pledged lot of the SKU: the oldest leave first
        page = LotFilter(f.facility_id, sku_id=sku_id, status=str(LotStatus.PLEDGED), limit=_LOT_PAGE)
        while found := await tx.query_lots(page):
            candidates += found
            if len(found) < _LOT_PAGE:
                break
            page = replace(page, after=found[-1].lot_id)
        candidates.sort(key=lambda lot: (lot.received_at or _BEFORE_ALL, lot.lot_id))
        picked, total = [], ZERO
        for lot in candidates:
            if total >= quantity:
                break
            picked.append(lot)
            total += lot.quantity
        if total < quantity:
            there, asked = decimal_text(total), decimal_text(quantity)
            raise InvalidReference(f"only {there} of {sku_id} is pledged in stock; {asked} was asked")
        return picked

    # --- statements and events ---------------------------------------------------------------------
    async def statement(self, facility_id: str, start: datetime, end: datetime) -> Statement:
        """[start, end): the period's postings, and the balances before it summed by the store
        (one pass over the earlier lines, no Posting built for them), in one snapshot."""
        async with self.ledger.snapshot() as tx:
            f = await self.ledger.facility_in(tx, facility_id)
            before = await tx.posting_sums(facility_id, before=start)
            postings = await tx.postings(facility_id, until=end, since=start)
        opening = Balances(f.currency, facility_id, MappingProxyType(before))
        return statement(postings, facility_id, start, end, f.currency, opening=opening)

    async def events(self, facility_id: str, after_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        async with self.ledger.transaction() as tx:
            await self.ledger.facility_in(tx, facility_id)
            return await tx.credit_events(facility_id, after_id, limit)

    async def check_balances(self, facility_id: str) -> tuple[bool, dict[str, Decimal], dict[str, Decimal]]:
        """Re-derive balances from every posting line and compare with the stored balances, both
        read in one snapshot: a drawdown booked meanwhile is in both or in neither."""
        async with self.ledger.snapshot() as tx:
            await self.ledger.facility_in(tx, facility_id)
            stored = (await tx.balances([facility_id]))[facility_id]
            derived = await tx.posting_sums(facility_id)
        derived_map = {a: b for a, b in derived.items() if b != 0}
        stored_map = {a: b for a, b in stored.items() if b != 0}
        return derived_map == stored_map, stored_map, derived_map

    # --- internals -------------------------------------------------------------------------------
    @staticmethod
    def _pid() -> str:
        return f"P-{secrets.token_hex(10)}"  # 80 random bits, as uuid4().hex[:20] gave, at 1/6 the cost

    async def _lock(self, tx: Any, facility_id: str, now: datetime) -> tuple[dict[str, Any], Facility]:
        st = await tx.lock_credit_state(facility_id)
        if st is None:
            raise UnknownFacility(facility_id)
        f = await self.ledger.facility_in(tx, facility_id)
        await self._accrue_in(tx, st, f, now)
        return st, f

    async def _accrue_in(self, tx: Any, st: dict[str, Any], f: Facility, now: datetime) -> int:
        """Book the interest of every whole day not yet accrued (see `_accruals`); how many
        interest postings that took."""
        if date.fromisoformat(st["accrued_through"]) >= now.date():
            return 0
        bal = await self._balances(tx, f)
        postings = _accruals(st, f, bal.principal, now)
        if postings:
            before = dict(bal.amounts)
            for p in postings:
                bal = bal.apply(p)
            await tx.insert_postings(postings, st["posting_seq"] + 1)
            st["posting_seq"] += len(postings)
            await tx.put_balances(f.facility_id, {a: v for a, v in bal.amounts.items() if before.get(a) != v})
        await tx.update_credit_states(
            [
                {
                    "facility_id": f.facility_id,
                    "accrued_through": st["accrued_through"],
                    "posting_seq": st["posting_seq"],
                }
            ]
        )
        return len(postings)

    @staticmethod
    def _settle_state(
        f: Facility, st: dict[str, Any], bb: BorrowingBase, bal: Balances, trigger: str, now: datetime
    ) -> tuple[list[dict[str, Any]], CreditAssessment]:
        """Update the credit state (in memory) after a money operation; the line crossings, and
        the line's assessment now."""
        owed = bal.total_owed
        prev = _assess(f, st["last_outstanding"], st["last_bb"], st["last_market_value"])
        cur = _assess(f, owed, bb.borrowing_base, bb.market_value)
        st.update(
            state=cur.state,
            frozen=cur.frozen,
            last_outstanding=owed,
            last_bb=bb.borrowing_base,
            last_market_value=bb.market_value,
        )
        events = [
            _event_row(f.facility_id, now, ev.kind, trigger, ev.facts())
            for ev in transitions(prev, cur, cast(Trigger, trigger))
        ]
        return events, cur

    async def _balances(self, tx: Any, f: Facility) -> Balances:
        stored = (await tx.balances([f.facility_id]))[f.facility_id]
        return Balances(f.currency, f.facility_id, stored) if stored else Balances(f.currency, f.facility_id)

    async def _reassess(self, tx: Any, bases: dict[str, BorrowingBase], trigger: str, now: datetime) -> None:
        """Re-check lines for facilities whose BB (or outstanding) may have moved; record events.

        The states are locked before the balances are read: read unlocked, a drawdown committed
        between that read and this transaction's update would be overwritten by a state computed
        from the balances before it (a stale `last_outstanding`, `frozen`, line state: the next
        crossing's event late or missing)."""
        states = await tx.credit_states(bases, lock=True)
        balances = await tx.balances(states)
        facilities = await self.ledger.facilities_in(tx, states)
        updates, events = [], []
        for fid, st in states.items():
            f = facilities[fid]
            owed = Balances(f.currency, fid, balances[fid]).total_owed if balances[fid] else ZERO
            prev = _assess(f, st["last_outstanding"], st["last_bb"], st["last_market_value"])
            cur = _assess(f, owed, bases[fid].borrowing_base, bases[fid].market_value)
            for ev in transitions(prev, cur, cast(Trigger, trigger if trigger in _TRIGGERS else "movement")):
                events.append(_event_row(fid, now, ev.kind, trigger, ev.facts()))
            updates.append(
                {
                    "facility_id": fid,
                    "state": cur.state,
                    "frozen": cur.frozen,
                    "last_outstanding": owed,
                    "last_bb": bases[fid].borrowing_base,
                    "last_market_value": bases[fid].market_value,
                }
            )
        await tx.update_credit_states(updates)
        await tx.insert_credit_events(events)

    async def _summary_in(self, tx: Any, facility_id: str, now: datetime) -> FacilitySummary:
        found = await self._summaries_in(tx, [facility_id], now)
        if not found:
            raise UnknownFacility(facility_id)
        return found[0]

    async def _summaries_in(
        self, tx: Any, facility_ids: Sequence[str], now: datetime
    ) -> list[FacilitySummary]:
        """Summaries of the facilities with a credit line, in the order given: one read per table."""
        states = await tx.credit_states(facility_ids)
        ids = [fid for fid in facility_ids if fid in states]
        facilities = await self.ledger.facilities_in(tx, ids)
        balances = await tx.balances(ids)
        bases = await self.ledger.bases_in(tx, ids)
        return [
            _summary(
                facilities[fid],
                states[fid],
                bases[fid],
                Balances(facilities[fid].currency, fid, MappingProxyType(balances[fid])),
                now,
            )
            for fid in ids
        ]


def _summary(
    f: Facility,
    st: dict[str, Any],
    bb: BorrowingBase,
    bal: Balances,
    now: datetime,
    assessed: CreditAssessment | None = None,
) -> FacilitySummary:
    """The facility as the borrower sees it at `now` (whole days not yet booked shown as accrued).

    `assessed`: the line's assessment of exactly (bal.total_owed, bb), if the caller has it; it
    stands when no interest is pending (a money operation has just booked it)."""
    pending = _pending_interest(st, bal.principal, f.currency, now)
    if assessed is not None and pending == 0:
        owed, a = bal.total_owed, assessed
    else:
        owed = bal.total_owed + pending
        a = _assess(f, owed, bb.borrowing_base, bb.market_value)
    mc = a.margin_call
    return FacilitySummary(
        f.facility_id,
        f.borrower_id,
        f.currency,
        st["status"],
        f.commitment,
        bb.borrowing_base,
        bb.market_value,
        bal.principal,
        bal.interest_receivable + pending,
        bal.fees_receivable,
        owed,
        a.availability,
        a.ltv,
        a.state,
        a.frozen,
        a.over_advance,
        mc.cash_needed if mc else None,
        mc.goods_value_needed if mc else None,
        RateBreakdown(
            st["funding_cost"],
            st["operating_cost"],
            st["risk_premium"],
            st["margin"],
            st["annual_rate"],
            st["tier"],
        ),
        now,
    )


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A money request under an Idempotency-Key, and how the caller answers it.

    `answer` renders a booked result, `refuse` a refusal; either answer is stored in the same
    transaction as the money (or as nothing, for a refusal), and replayed for the same key.
    """

    key: RequestKey
    answer: Callable[[Any], StoredResponse]
    refuse: Callable[[LedgerError], StoredResponse]

    @property
    def posting_key(self) -> str:
        """The key the posting carries: scoped like the request record."""
        return f"{self.key.scope}:{self.key.key}"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a keyed request gets: a fresh answer, or the stored one replayed."""

    response: StoredResponse
    replayed: bool


@dataclass(frozen=True, slots=True)
class _MoneyOrder:
    """A drawdown or repayment as the money desk runs it (`MoneyOrder`)."""

    credit: CreditService
    facility: Facility
    request: KeyedRequest | None
    operation: _Operation

    @property
    def facility_id(self) -> str:
        return self.facility.facility_id

    @property
    def key(self) -> RequestKey | None:
        return None if self.request is None else self.request.key

    def aged_before(self, now: datetime) -> datetime:
        return now - timedelta(days=self.facility.max_age_days)

    def decide(self, money: MoneyState | None, now: datetime) -> Decision:
        request = self.request
        try:
            if money is None:
                raise UnknownFacility(self.facility_id)
            result, writes = self.credit._decide(self.facility, money, self.operation, now)
        except LedgerError as e:
            if request is None:
                return Decision(None, error=e)
            refusal = request.refuse(e)
            return Decision(Answer(refusal, replayed=False), answer=refusal)
        if request is None:
            return Decision(result, writes)
        response = request.answer(result)
        return Decision(Answer(response, replayed=False), writes, response)

    def replay(self, stored: StoredResponse) -> Answer:
        return Answer(stored, replayed=True)


# An operation decides its posting from the locked state: (posting id, facility, credit state,
# balances after accrual, BB, now) -> (posting, trigger); it raises a LedgerError to refuse.
_Operation = Callable[[str, Facility, dict[str, Any], Balances, BorrowingBase, datetime], tuple[Posting, str]]


def _drawdown(amount: Decimal, key: str | None) -> _Operation:
    def decide(
        pid: str, f: Facility, st: dict[str, Any], bal: Balances, bb: BorrowingBase, now: datetime
    ) -> tuple[Posting, str]:
        a = _assess(f, bal.total_owed, bb.borrowing_base, bb.market_value)
        check_drawdown(st["status"] == "active", a.frozen, amount, a.availability, f.facility_id, f.currency)
        posting = drawdown_posting(
            pid, f.facility_id, now, amount, f.currency, memo="drawdown", idempotency_key=key
        )
        return posting, "drawdown"

    return decide


def _repayment(amount: Decimal, key: str | None) -> _Operation:
    def decide(
        pid: str, f: Facility, st: dict[str, Any], bal: Balances, bb: BorrowingBase, now: datetime
    ) -> tuple[Posting, str]:
        (posting,) = repayment_postings(
            pid, f.facility_id, now, amount, bal.owed, f.currency, memo="repayment", idempotency_key=key
        )
        return posting, "repayment"

    return decide


def _accruals(st: dict[str, Any], f: Facility, principal: Decimal, now: datetime) -> list[Posting]:
    """One interest posting per whole day in [accrued_through, today) (act/365); moves
    `st["accrued_through"]` to today. Each is stamped at its day's last instant (23:59:59.999999
    UTC): a statement for [the 1st, the next 1st) holds the interest of exactly that month's days
    (stamped at the midnight after, the last day's would fall into the next month's).

    The principal is constant over those days: it changes only through postings, and every
    posting accrues first. So each day's interest is on that day's end-of-day principal.
    """
    start, today = date.fromisoformat(st["accrued_through"]), now.date()
    if start >= today:
        return []
    postings = []
    day = start
    while day < today and principal > 0:
        amount = daily_interest(principal, st["annual_rate"], f.currency)
        if amount > 0:
            at = datetime.combine(day, time.max, tzinfo=now.tzinfo)
            postings.append(
                interest_accrual_posting(
                    f"I-{f.facility_id}-{day.isoformat()}",
                    f.facility_id,
                    at,
                    amount,
                    f.currency,
                    memo=f"interest {day.isoformat()} act/365 on {money_text(principal, f.currency)}",
                )
            )
        day += timedelta(days=1)
    st["accrued_through"] = today.isoformat()
    return postings


_TRIGGERS = {"movement", "revaluation", "drawdown", "repayment", "release", "interest_accrual", "fee"}


def _assess(f: Facility, owed: Decimal, bb: Decimal, market_value: Decimal) -> CreditAssessment:
    return assess(owed, bb, market_value, f.commitment, f.warning_ltv, f.liquidation_ltv, f.currency)


def _pending_interest(st: dict[str, Any], principal: Decimal, currency: str, now: datetime) -> Decimal:
    """Interest of whole days not yet booked (shown on reads; booked by the next money call)."""
    days = (now.date() - date.fromisoformat(st["accrued_through"])).days
    if days <= 0 or principal <= 0:
        return ZERO
    return daily_interest(principal, st["annual_rate"], currency) * days


def _event_row(fid: str, at: datetime, kind: str, trigger: str, facts: dict[str, Any]) -> dict[str, Any]:
    return {"facility_id": fid, "at": at, "kind": kind, "trigger": trigger, "facts": facts}


__all__ = [
    "Answer",
    "CreditService",
    "FacilitySummary",
    "KeyedRequest",
    "LedgerError",
    "MoneyResult",
    "ReleaseResult",
]
