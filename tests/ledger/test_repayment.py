"""Repayment allocation: accrued interest first, then fees, then principal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger.core.errors import InvalidAmount, Overpayment
from ledger.core.repayment import Allocation, Owed, allocate_repayment

D = Decimal
OWED = Owed(interest=D("450.00"), fees=D("250.00"), principal=D("150000.00"))


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (D("100.00"), Allocation(D("100.00"), D(0), D(0))),  # part of the interest
        (D("450.00"), Allocation(D("450.00"), D(0), D(0))),  # exactly the interest
        (D("600.00"), Allocation(D("450.00"), D("150.00"), D(0))),  # interest, part of fees
        (D("700.00"), Allocation(D("450.00"), D("250.00"), D(0))),  # interest and fees
        (D("40000.00"), Allocation(D("450.00"), D("250.00"), D("39300.00"))),
        (D("150700.00"), Allocation(D("450.00"), D("250.00"), D("150000.00"))),  # everything
    ],
)
def test_interest_is_settled_first_then_fees_then_principal(
    amount: Decimal, expected: Allocation
) -> None:
    split = allocate_repayment(amount, OWED, "EUR")
    assert split == expected
    assert split.total == amount


def test_overpayment_carries_the_exact_amount_owed() -> None:
    with pytest.raises(Overpayment) as err:
        allocate_repayment(D("150700.01"), OWED, "EUR", facility_id="fac-1")
    assert err.value.owed == D("150700.00")
    assert err.value.offered == D("150700.01")
    assert err.value.facility_id == "fac-1"
    assert err.value.code == "overpayment"


def test_nothing_owed_means_any_repayment_is_an_overpayment() -> None:
    with pytest.raises(Overpayment) as err:
        allocate_repayment(D("0.01"), Owed(D(0), D(0), D(0)), "EUR")
    assert err.value.owed == 0


@pytest.mark.parametrize("amount", [D(0), D("-1.00"), D("10.001")], ids=["zero", "neg", "sub-cent"])
def test_zero_negative_or_sub_minor_unit_amounts_are_refused(amount: Decimal) -> None:
    with pytest.raises(InvalidAmount):
        allocate_repayment(amount, OWED, "EUR")


def test_floats_are_refused() -> None:
    with pytest.raises(InvalidAmount, match="float"):
        allocate_repayment(100.0, OWED, "EUR")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="float"):
        Owed(interest=0.5, fees=D(0), principal=D(0))  # type: ignore[arg-type]


def test_owed_parts_are_never_negative() -> None:
    with pytest.raises(InvalidAmount):
        Owed(interest=D(0), fees=D("-1"), principal=D(0))


def test_yen_repayments_are_whole_yen() -> None:
    owed = Owed(interest=D(200), fees=D(0), principal=D(1_000_000))
    assert allocate_repayment(D(1000), owed, "JPY") == Allocation(D(200), D(0), D(800))
    with pytest.raises(InvalidAmount):
        allocate_repayment(D("1000.5"), owed, "JPY")


cents = st.integers(min_value=0, max_value=10**9).map(lambda c: D(c).scaleb(-2))


@given(cents, cents, cents, st.data())
def test_allocation_sums_to_the_amount_and_pays_principal_last(
    interest: Decimal, fees: Decimal, principal: Decimal, data: st.DataObject
) -> None:
    owed = Owed(interest, fees, principal)
    total_cents = int(owed.total * 100)
    assume(total_cents > 0)
    amount = D(data.draw(st.integers(1, total_cents))).scaleb(-2)
    split = allocate_repayment(amount, owed, "EUR")
    assert split.total == amount
    assert 0 <= split.interest <= interest
    assert 0 <= split.fees <= fees
    assert 0 <= split.principal <= principal
    if split.fees > 0 or split.principal > 0:
        assert split.interest == interest  # no fee or principal before interest is fully paid
    if split.principal > 0:
        assert split.fees == fees
