"""The credit line: LTV lines, over-advance, margin calls, events, and drawdown/release checks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.credit_line import (
    CreditAssessment,
    InvalidLtvLines,
    MarginCall,
    assess,
    check_drawdown,
    check_release,
    transitions,
)
from ledger.core.errors import (
    FacilityFrozen,
    FacilityInactive,
    InsufficientAvailability,
    InvalidAmount,
    InvalidInput,
    ReleaseRefused,
)

D = Decimal
WARN, LIQ = D("0.70"), D("0.85")


def a(out: str, bb: str, mv: str, commitment: str = "1000000", currency: str = "EUR") -> CreditAssessment:
    return assess(D(out), D(bb), D(mv), D(commitment), WARN, LIQ, currency)


# --- assess ------------------------------------------------------------------------------------


def test_healthy_line() -> None:
    x = a("500000", "700000", "1000000", commitment="800000")
    assert x.ltv == D("0.5")
    assert x.availability == D("200000.00")
    assert x.over_advance == 0
    assert (x.state, x.frozen, x.margin_call) == ("ok", False, None)


def test_availability_is_capped_by_the_commitment() -> None:
    assert a("500000", "900000", "1000000", commitment="800000").availability == D("300000.00")


def test_ltv_exactly_on_the_warning_line_is_within_it() -> None:
    x = a("700000", "800000", "1000000")
    assert (x.ltv, x.state, x.margin_call) == (D("0.7"), "ok", None)


def test_above_the_warning_line_a_margin_call_states_cash_or_goods() -> None:
    x = a("750000", "800000", "1000000")
    assert (x.state, x.frozen) == ("warning", False)
    # cash: 750,000 - 0.70 x 1,000,000 = 50,000.00
    # goods: 750,000 / 0.70 - 1,000,000 = 71,428.5714... -> rounded UP to 71,428.58
    #        (71,428.57 more would leave LTV at 0.7000000028, still above the line)
    assert x.margin_call == MarginCall(cash_needed=D("50000.00"), goods_value_needed=D("71428.58"))
    assert x.availability == D("50000.00")  # a warning notifies; it does not freeze


def test_above_the_liquidation_line_the_line_freezes() -> None:
    x = a("900000", "1000000", "1000000")
    assert (x.ltv, x.state, x.frozen) == (D("0.9"), "liquidation", True)
    # 900,000 - 700,000; 900,000 / 0.7 - 1,000,000 = 285,714.2857... -> 285,714.29
    assert x.margin_call == MarginCall(D("200000.00"), D("285714.29"))


def test_over_advance_alone_freezes_and_calls_for_the_excess() -> None:
    x = a("500000", "450000", "1000000", commitment="800000")
    assert (x.state, x.over_advance, x.availability, x.frozen) == ("ok", D("50000.00"), 0, True)
    assert x.margin_call == MarginCall(cash_needed=D("50000.00"), goods_value_needed=D("0.00"))


def test_cash_needed_cures_both_the_line_and_the_over_advance() -> None:
    x = a("750000", "600000", "1000000")  # line wants 50,000; over-advance is 150,000
    assert (x.state, x.over_advance, x.frozen) == ("warning", D("150000.00"), True)
    assert x.margin_call is not None and x.margin_call.cash_needed == D("150000.00")
    assert not a("600000", "600000", "1000000").in_breach


def test_nothing_lent_nothing_pledged_has_no_ltv() -> None:
    x = a("0", "0", "0")
    assert (x.ltv, x.state, x.frozen, x.availability) == (None, "ok", False, 0)


def test_money_owed_against_worthless_goods_is_above_every_line() -> None:
    x = a("100", "0", "0")
    assert x.ltv == D("Infinity")
    assert (x.state, x.frozen, x.over_advance) == ("liquidation", True, D("100.00"))
    assert x.margin_call == MarginCall(D("100.00"), D("142.86"))  # 100 / 0.7 = 142.857...


def test_availability_rounds_down_and_over_advance_rounds_up() -> None:
    assert a("0", "1000.005", "2000", commitment="5000").availability == D("1000.00")
    x = a("1000.00", "999.994", "10000", commitment="5000")
    assert (x.over_advance, x.availability, x.frozen) == (D("0.01"), 0, True)
    assert a("1000", "999.4", "10000", currency="JPY").over_advance == D(1)


def test_lines_and_inputs_are_validated() -> None:
    with pytest.raises(InvalidLtvLines):
        assess(D(1), D(1), D(1), D(1), D("0.85"), D("0.85"), "EUR")
    with pytest.raises(InvalidLtvLines):
        assess(D(1), D(1), D(1), D(1), D(0), D("0.85"), "EUR")
    with pytest.raises(InvalidAmount):
        assess(D(-1), D(1), D(1), D(1), WARN, LIQ, "EUR")
    with pytest.raises(InvalidAmount, match="float"):
        assess(D(1), 1.0, D(1), D(1), WARN, LIQ, "EUR")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="currency"):
        assess(D(1), D(1), D(1), D(1), WARN, LIQ, "euro")


# --- transitions -------------------------------------------------------------------------------

OK = a("500000", "800000", "1000000")
WARNING = a("750000", "800000", "1000000")
WORSE_WARNING = a("800000", "800000", "1000000")
LIQUIDATION = a("900000", "1000000", "1000000")
OVER_ADVANCED = a("500000", "450000", "1000000")
WARNING_AND_OVER = a("750000", "600000", "1000000")


def kinds(previous: CreditAssessment | None, current: CreditAssessment) -> list[str]:
    return [e.kind for e in transitions(previous, current, "revaluation")]


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, OK, []),
        (None, WARNING, ["warning_line_crossed"]),
        (OK, WARNING, ["warning_line_crossed"]),
        (OK, LIQUIDATION, ["warning_line_crossed", "liquidation_line_crossed", "frozen"]),
        (WARNING, LIQUIDATION, ["liquidation_line_crossed", "frozen"]),
        (WARNING, WORSE_WARNING, []),
        (LIQUIDATION, LIQUIDATION, []),
        (LIQUIDATION, WARNING, ["unfrozen"]),
        (WARNING, OK, ["cured"]),
        (LIQUIDATION, OK, ["unfrozen", "cured"]),
        (OK, OVER_ADVANCED, ["over_advance", "frozen"]),
        (OVER_ADVANCED, OK, ["unfrozen", "cured"]),
        (WARNING_AND_OVER, WARNING, ["unfrozen"]),  # excess repaid, still above the line
        (WARNING, WARNING_AND_OVER, ["over_advance", "frozen"]),
    ],
)
def test_events_report_changes_only(
    previous: CreditAssessment | None, current: CreditAssessment, expected: list[str]
) -> None:
    assert kinds(previous, current) == expected


def test_an_event_carries_the_facts_and_the_trigger() -> None:
    (event,) = transitions(OK, WARNING, "drawdown")
    assert event.trigger == "drawdown"
    assert (event.ltv, event.warning_ltv, event.liquidation_ltv) == (D("0.75"), WARN, LIQ)
    assert (event.outstanding, event.borrowing_base, event.market_value) == (
        D("750000"),
        D("800000"),
        D("1000000"),
    )
    assert (event.cash_needed, event.goods_value_needed) == (D("50000.00"), D("71428.58"))
    assert event.frozen is False


def test_facts_are_json_ready() -> None:
    frozen = transitions(None, a("100", "0", "0"), "movement")[-1]
    facts = frozen.facts()
    assert facts["kind"] == "frozen"
    assert facts["ltv"] == "Infinity"
    assert facts["cash_needed"] == "100.00"
    assert facts["frozen"] is True
    assert (facts["outstanding"], facts["borrowing_base"]) == ("100.00", "0.00")
    warned = transitions(OK, WARNING, "drawdown")[0].facts()
    assert (warned["ltv"], warned["warning_ltv"]) == ("0.75", "0.7")  # ratios: no trailing zeros
    assert (warned["outstanding"], warned["market_value"]) == ("750000.00", "1000000.00")
    cured = transitions(WARNING, OK, "repayment")[0].facts()
    assert cured["cash_needed"] is None


def test_unknown_trigger_is_refused() -> None:
    with pytest.raises(InvalidInput, match="trigger"):
        transitions(OK, WARNING, "whim")  # type: ignore[arg-type]


# --- drawdown and release checks ---------------------------------------------------------------


def test_a_drawdown_up_to_the_availability_is_allowed() -> None:
    assert check_drawdown(True, False, D("200000.00"), D("200000.00"), "fac-1") == D("200000.00")


def test_a_drawdown_above_the_availability_states_both_amounts() -> None:
    with pytest.raises(InsufficientAvailability) as err:
        check_drawdown(True, False, D("200000.01"), D("200000.00"), "fac-1")
    assert (err.value.requested, err.value.available) == (D("200000.01"), D("200000.00"))
    assert err.value.facility_id == "fac-1"


def test_an_inactive_facility_is_refused_before_a_frozen_one() -> None:
    with pytest.raises(FacilityInactive):
        check_drawdown(False, True, D("1.00"), D("100.00"), "fac-1")
    with pytest.raises(FacilityFrozen) as err:
        check_drawdown(True, True, D("1.00"), D("100.00"), "fac-1")
    assert err.value.facts["facility_id"] == "fac-1"


@pytest.mark.parametrize("amount", [D(0), D("-1.00"), 1.0], ids=["zero", "negative", "float"])
def test_a_drawdown_amount_must_be_a_positive_decimal(amount: Decimal) -> None:
    with pytest.raises(InvalidAmount):
        check_drawdown(True, False, amount, D("100.00"), "fac-1")


def test_a_release_that_leaves_the_bb_short_says_what_to_repay_first() -> None:
    with pytest.raises(ReleaseRefused) as err:
        check_release(D("500000.00"), D("480000.00"), "fac-1", "EUR")
    assert err.value.repay_first == D("20000.00")
    assert err.value.facility_id == "fac-1"
    check_release(D("500000.00"), D("500000.00"), "fac-1", "EUR")  # exactly covered: allowed


def test_repay_first_rounds_up_against_an_unrounded_bb() -> None:
    with pytest.raises(ReleaseRefused) as err:
        check_release(D("500000.00"), D("479999.995"), "fac-1", "EUR")
    assert err.value.repay_first == D("20000.01")


# --- properties --------------------------------------------------------------------------------

money = st.integers(min_value=0, max_value=10**11).map(lambda c: D(c).scaleb(-2))
unrounded = st.integers(min_value=0, max_value=10**13).map(lambda c: D(c).scaleb(-4))
lines = st.tuples(st.integers(1, 150), st.integers(1, 150)).map(
    lambda wl: (D(wl[0]).scaleb(-2), D(wl[0] + wl[1]).scaleb(-2))
)


@given(money, unrounded, unrounded, money, lines)
def test_availability_is_never_negative_nor_above_commitment_and_never_over_advances(
    out: Decimal, bb: Decimal, mv: Decimal, commitment: Decimal, wl: tuple[Decimal, Decimal]
) -> None:
    x = assess(out, bb, mv, commitment, wl[0], wl[1], "EUR")
    assert 0 <= x.availability <= commitment
    assert x.over_advance >= 0
    if x.availability > 0:
        drawn = assess(out + x.availability, bb, mv, commitment, wl[0], wl[1], "EUR")
        assert drawn.over_advance == 0
        assert out + x.availability <= commitment
    assert x.frozen == (x.state == "liquidation" or x.over_advance > 0)


@given(money, unrounded, unrounded, lines)
def test_paying_the_margin_call_in_cash_or_goods_cures(
    out: Decimal, bb: Decimal, mv: Decimal, wl: tuple[Decimal, Decimal]
) -> None:
    x = assess(out, bb, mv, D(10**12), wl[0], wl[1], "EUR")
    assert (x.margin_call is not None) == x.in_breach
    if x.margin_call is None:
        return
    repaid = assess(max(D(0), out - x.margin_call.cash_needed), bb, mv, D(10**12), *wl, "EUR")
    assert not repaid.in_breach
    assert transitions(x, repaid, "repayment")[-1].kind == "cured"
    topped_up = assess(out, bb, mv + x.margin_call.goods_value_needed, D(10**12), *wl, "EUR")
    assert topped_up.state == "ok"


@given(money, unrounded, unrounded, lines)
def test_no_change_no_event(out: Decimal, bb: Decimal, mv: Decimal, wl: tuple[Decimal, Decimal]) -> None:
    x = assess(out, bb, mv, D(10**12), wl[0], wl[1], "EUR")
    assert transitions(x, x, "revaluation") == []
