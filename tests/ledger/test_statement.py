"""A facility's statement: opening, each posting with running balances, closing, totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.errors import CurrencyMismatch, InvalidInput
from ledger.core.interest import InvalidPeriod
from ledger.core.posting import (
    Balances,
    Posting,
    drawdown_posting,
    fee_posting,
    interest_accrual_posting,
    repayment_postings,
)
from ledger.core.statement import StatementBalances, statement

EUR = "EUR"
FAC = "fac-1"
D = Decimal


def t(day: int, hour: int = 0) -> datetime:
    """Day 1 = 2024-01-01 (UTC); day 32 = 2024-02-01."""
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour)


def daily(day: int) -> Decimal:
    """Hand-computed interest at 7.30 % act/365 (principal x 0.0002) for day `day` of January."""
    return D("20.00") if day <= 15 else D("30.00") if day <= 20 else D("22.14")


def january() -> list[Posting]:
    """Draw 100,000 (day 1), fee 250 (day 10), draw 50,000 (day 16), repay 40,000 (day 21).

    Each day's interest is booked at the next midnight, so day 30's lands on Jan 31 00:00.
    """
    postings: list[Posting] = []
    for day in range(1, 32):
        if day > 1:
            postings.append(interest_accrual_posting(f"i{day - 1}", FAC, t(day), daily(day - 1), EUR))
        if day == 1:
            postings.append(drawdown_posting("d1", FAC, t(1, 10), D("100000.00"), EUR))
        if day == 10:
            postings.append(fee_posting("f1", FAC, t(10, 12), D("250.00"), EUR, memo="arrangement"))
        if day == 16:
            postings.append(drawdown_posting("d2", FAC, t(16, 9), D("50000.00"), EUR))
        if day == 21:
            owed = Balances.from_postings(postings).owed
            postings.extend(repayment_postings("r1", FAC, t(21, 12), D("40000.00"), owed, EUR))
    return postings


def owed(principal: str, interest: str, fees: str) -> StatementBalances:
    p, i, f = D(principal), D(interest), D(fees)
    return StatementBalances(p, i, f, p + i + f)


def test_the_month_from_nothing_to_the_closing_balance() -> None:
    s = statement(january(), FAC, t(1), t(32), EUR)
    assert s.opening == owed("0", "0", "0")
    assert len(s.lines) == 34  # 2 drawdowns, 1 fee, 1 repayment, 30 accruals
    assert s.closing == owed("110700.00", "221.40", "0.00")
    assert s.closing.total_owed == D("110921.40")
    assert (s.drawn, s.repaid) == (D("150000.00"), D("40000.00"))
    assert (s.interest_charged, s.fees_charged) == (D("671.40"), D("250.00"))


def test_the_repayment_line_shows_interest_settled_first() -> None:
    s = statement(january(), FAC, t(1), t(32), EUR)
    (line,) = [x for x in s.lines if x.posting_id == "r1"]
    assert line.amount == D("40000.00")
    # interest for days 1-20: 15 x 20.00 + 5 x 30.00 = 450.00; then the 250.00 fee; then principal
    assert (line.interest_change, line.fees_change, line.principal_change) == (
        D("-450.00"),
        D("-250.00"),
        D("-39300.00"),
    )
    assert line.balances == owed("110700.00", "0.00", "0.00")


def test_running_balances_follow_each_posting() -> None:
    s = statement(january(), FAC, t(1), t(32), EUR)
    first, second = s.lines[0], s.lines[1]
    assert (first.posting_id, first.balances) == ("d1", owed("100000.00", "0", "0"))
    assert (second.posting_id, second.balances) == ("i1", owed("100000.00", "20.00", "0"))
    assert s.lines[-1].balances == s.closing


def test_a_mid_month_period_opens_with_what_came_before() -> None:
    # Before Jan 16 00:00: the first drawdown, the fee, and interest for days 1-14 (14 x 20.00).
    s = statement(january(), FAC, t(16), t(21), EUR)
    assert s.opening == owed("100000.00", "280.00", "250.00")
    # Jan 16-20 bring day 15's interest (at Jan 16 00:00) through day 19's, and the 50,000 draw.
    assert s.interest_charged == D("20.00") + 4 * D("30.00")
    assert s.drawn == D("50000.00")
    assert s.closing == owed("150000.00", "420.00", "250.00")


def test_consecutive_statements_chain() -> None:
    postings = january()
    first = statement(postings, FAC, t(1), t(16), EUR)
    second = statement(postings, FAC, t(16), t(32), EUR)
    assert first.closing == second.opening
    assert len(first.lines) + len(second.lines) == 34


def test_start_is_included_and_end_excluded() -> None:
    s = statement(january(), FAC, t(2), t(3), EUR)  # [Jan 2 00:00, Jan 3 00:00)
    assert [line.posting_id for line in s.lines] == ["i1"]


def test_other_facilities_are_left_out_and_currencies_must_match() -> None:
    other = drawdown_posting("x1", "fac-2", t(5), D("999.00"), EUR)
    s = statement([*january(), other], FAC, t(1), t(32), EUR)
    assert "x1" not in {line.posting_id for line in s.lines}
    with pytest.raises(CurrencyMismatch):
        statement(january(), FAC, t(1), t(32), "USD")


def test_postings_are_ordered_by_time_and_ties_keep_the_given_order() -> None:
    a = drawdown_posting("a", FAC, t(2), D("1.00"), EUR)
    b = fee_posting("b", FAC, t(2), D("2.00"), EUR)
    c = drawdown_posting("c", FAC, t(1), D("3.00"), EUR)
    s = statement([a, b, c], FAC, t(1), t(3), EUR)
    assert [line.posting_id for line in s.lines] == ["c", "a", "b"]


def test_periods_are_checked() -> None:
    with pytest.raises(InvalidPeriod):
        statement([], FAC, t(2), t(1), EUR)
    with pytest.raises(InvalidInput, match="timezone-aware"):
        statement([], FAC, datetime(2024, 1, 1), t(2), EUR)
    empty = statement([], FAC, t(1), t(1), EUR)
    assert empty.lines == () and empty.opening == empty.closing == owed("0", "0", "0")


cents = st.integers(min_value=1, max_value=10**8).map(lambda c: D(c).scaleb(-2))
ops = st.lists(st.tuples(st.sampled_from(["draw", "accrue", "fee", "repay"]), cents), max_size=30)


def book(operations: list[tuple[str, Decimal]]) -> list[Posting]:
    postings: list[Posting] = []
    balances = Balances()
    for n, (op, amount) in enumerate(operations):
        at, pid = t(1) + timedelta(hours=n), f"p{n}"
        if op == "draw":
            new: tuple[Posting, ...] = (drawdown_posting(pid, FAC, at, amount, EUR),)
        elif op == "accrue":
            new = (interest_accrual_posting(pid, FAC, at, amount, EUR),)
        elif op == "fee":
            new = (fee_posting(pid, FAC, at, amount, EUR),)
        elif balances.total_owed > 0:
            new = repayment_postings(pid, FAC, at, min(amount, balances.total_owed), balances.owed, EUR)
        else:
            new = ()
        for posting in new:
            balances = balances.apply(posting)
        postings.extend(new)
    return postings


@given(ops, st.integers(0, 30), st.integers(0, 30))
def test_closing_is_opening_plus_charges_minus_repayments(
    operations: list[tuple[str, Decimal]], h1: int, h2: int
) -> None:
    start, end = t(1) + timedelta(hours=min(h1, h2)), t(1) + timedelta(hours=max(h1, h2))
    s = statement(book(operations), FAC, start, end, EUR)
    expected = s.opening.total_owed + s.drawn + s.interest_charged + s.fees_charged - s.repaid
    assert s.closing.total_owed == expected
    for line in s.lines:
        b = line.balances
        assert b.total_owed == b.principal + b.interest_receivable + b.fees_receivable
        assert min(b.principal, b.interest_receivable, b.fees_receivable) >= 0
