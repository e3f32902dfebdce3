"""A facility's account statement for a period [start, end) (pure).

Opening balances are those after every posting before `start`; each posting in the period is
listed with the running balances after it; closing balances are those after the last posting
before `end`. Postings are taken in order of `at`; postings with the same `at` keep the order
they were given in (the journal's order). Postings of other facilities are skipped.

Invariant (for postings made by the posting.py builders):
    closing.total_owed = opening.total_owed + drawn + interest_charged + fees_charged - repaid
Money in the facility's currency, as booked (already at the minor unit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ledger.core.errors import CurrencyMismatch
from ledger.core.interest import InvalidPeriod
from ledger.core.posting import Balances, Posting, PostingKind, check_aware, check_currency

__all__ = ["Statement", "StatementBalances", "StatementLine", "statement"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class StatementBalances:
    """What the borrower owes at one point (currency units); total_owed is the sum of the three."""

    principal: Decimal
    interest_receivable: Decimal
    fees_receivable: Decimal
    total_owed: Decimal

    @classmethod
    def of(cls, balances: Balances) -> StatementBalances:
        return cls(
            balances.principal,
            balances.interest_receivable,
            balances.fees_receivable,
            balances.total_owed,
        )


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One posting: its amount, its signed effect on each owed account, and balances after it."""

    posting_id: str
    at: datetime
    kind: PostingKind
    memo: str
    amount: Decimal
    principal_change: Decimal
    interest_change: Decimal
    fees_change: Decimal
    balances: StatementBalances


@dataclass(frozen=True, slots=True)
class Statement:
    """A facility's statement for [start, end): opening, lines, closing, and period totals."""

    facility_id: str
    currency: str
    start: datetime
    end: datetime
    opening: StatementBalances
    lines: tuple[StatementLine, ...]
    closing: StatementBalances
    drawn: Decimal
    repaid: Decimal
    interest_charged: Decimal
    fees_charged: Decimal


def _line(posting: Posting, after: Balances) -> StatementLine:
    return StatementLine(
        posting_id=posting.posting_id,
        at=posting.at,
        kind=posting.kind,
        memo=posting.memo,
        amount=posting.amount,
        principal_change=posting.effect("principal"),
        interest_change=posting.effect("interest_receivable"),
        fees_change=posting.effect("fees_receivable"),
        balances=StatementBalances.of(after),
    )


def _total(lines: Iterable[StatementLine], kind: PostingKind) -> Decimal:
    return sum((line.amount for line in lines if line.kind == kind), ZERO)


def statement(
    postings: Iterable[Posting],
    facility_id: str,
    start: datetime,
    end: datetime,
    currency: str,
    opening: Balances | None = None,
) -> Statement:
    """Build the statement of `facility_id` for [start, end) (timezone-aware datetimes).

    `opening`: the balances after every posting before `start`, when the caller has them
    (the store sums a long history's lines without building its postings); postings before
    `start` are then already counted there and skipped here. None: summed from `postings`.

    Raises InvalidPeriod when end < start, CurrencyMismatch when one of the facility's
    postings (or `opening`) is in another currency.
    """
    check_aware("start", start)
    check_aware("end", end)
    check_currency(currency)
    if end < start:
        raise InvalidPeriod(start, end)
    mine = [p for p in postings if p.facility_id == facility_id]
    for p in mine:
        if p.currency != currency:
            raise CurrencyMismatch(currency, p.currency, f"statement of facility {facility_id}")
    mine.sort(key=lambda p: p.at)
    if opening is not None and opening.currency not in (None, currency):
        raise CurrencyMismatch(currency, str(opening.currency), f"opening balances of facility {facility_id}")
    balances = opening if opening is not None else Balances(currency, facility_id)
    lines: list[StatementLine] = []
    opened = StatementBalances.of(balances)
    for posting in mine:
        if posting.at >= end:
            break
        if posting.at < start:
            if opening is None:
                balances = balances.apply(posting)
                opened = StatementBalances.of(balances)
            continue
        balances = balances.apply(posting)
        lines.append(_line(posting, balances))
    return Statement(
        facility_id=facility_id,
        currency=currency,
        start=start,
        end=end,
        opening=opened,
        lines=tuple(lines),
        closing=StatementBalances.of(balances),
        drawn=_total(lines, "drawdown"),
        repaid=_total(lines, "repayment"),
        interest_charged=_total(lines, "interest_accrual"),
        fees_charged=_total(lines, "fee"),
    )
