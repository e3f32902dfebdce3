"""The credit line's state: LTV warning and liquidation lines, over-advance, margin calls (pure).

    LTV           = outstanding / market value of the pledged goods
    availability  = max(0, min(commitment, BB) - outstanding)
    over-advance  = max(0, outstanding - BB)
    state         = "liquidation" if LTV > liquidation line, "warning" if LTV > warning line,
                    else "ok"
    frozen        = state is "liquidation" or over-advance > 0 (no new drawdowns)

Conventions:
- A line is crossed when LTV rises STRICTLY above it; LTV exactly on a line is within it. So the
  margin call amounts, which bring LTV back to the warning line, cure exactly.
- Lines are compared exactly (outstanding vs line x market value), never through a rounded
  LTV. `ltv` itself is a ratio, not money: 28 significant digits, Decimal("Infinity") when
  goods are worth 0 but money is owed (above every line), None when nothing is owed or pledged.
- Inputs may be unrounded (the BB is). Amounts the borrower may take (availability) are rounded
  DOWN to the minor unit, amounts the borrower must bring (over-advance, cash and goods needed,
  repay-first) UP: paying what we state always cures; drawing what we state never overdraws.
- `outstanding` is what the contract measures against the collateral (principal, or principal
  plus accrued interest and fees): the caller decides, this module only compares.

Money in the facility's currency; lines are fractions (Decimal("0.70") = 70 %).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from typing import Literal, get_args

from ledger.core.errors import (
    FacilityFrozen,
    FacilityInactive,
    InsufficientAvailability,
    InvalidAmount,
    InvalidInput,
    ReleaseRefused,
)
from ledger.core.money import decimal_text, minor_step, money_text, require_positive, to_decimal
from ledger.core.posting import check_currency

__all__ = [
    "EVENT_KINDS",
    "TRIGGERS",
    "CreditAssessment",
    "CreditEvent",
    "CreditEventKind",
    "InvalidLtvLines",
    "LtvState",
    "MarginCall",
    "Trigger",
    "assess",
    "check_drawdown",
    "check_release",
    "transitions",
]

ZERO = Decimal(0)
INFINITE_LTV = Decimal("Infinity")
_RATIO = Context(prec=28)

LtvState = Literal["ok", "warning", "liquidation"]
Trigger = Literal["movement", "revaluation", "drawdown", "repayment", "release", "interest_accrual", "fee"]
TRIGGERS: tuple[str, ...] = get_args(Trigger)
CreditEventKind = Literal[
    "warning_line_crossed",
    "liquidation_line_crossed",
    "over_advance",
    "frozen",
    "unfrozen",
    "cured",
]
EVENT_KINDS: tuple[str, ...] = get_args(CreditEventKind)


class InvalidLtvLines(InvalidInput):
    """LTV lines must satisfy 0 < warning line < liquidation line."""

    code = "invalid_ltv_lines"

    def __init__(self, warning_ltv: Decimal, liquidation_ltv: Decimal) -> None:
        super().__init__(
            f"LTV lines must satisfy 0 < warning ({warning_ltv}) < liquidation ({liquidation_ltv})",
            warning_ltv=str(warning_ltv),
            liquidation_ltv=str(liquidation_ltv),
        )


def _non_negative(value: object, field: str) -> Decimal:
    amount = to_decimal(value, field=field)
    if amount < 0:
        raise InvalidAmount(field, amount, "must not be negative")
    return amount


def _up(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_step(currency), rounding=ROUND_CEILING)


def _down(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_step(currency), rounding=ROUND_FLOOR)


@dataclass(frozen=True, slots=True)
class MarginCall:
    """What cures the breach, either way (currency units, rounded up to the minor unit).

    `cash_needed`: repayment that brings LTV back to the warning line AND cures any
    over-advance: max(outstanding - warning_ltv x market value, outstanding - BB).
    `goods_value_needed`: market value of goods to add that brings LTV back to the warning
    line: outstanding / warning_ltv - market value. It does not cover an over-advance: how much
    BB new goods add depends on their haircut and advance rate (borrowing_base.py).
    """

    cash_needed: Decimal
    goods_value_needed: Decimal


@dataclass(frozen=True, slots=True)
class CreditAssessment:
    """The line's state at one moment; inputs echoed so an event can state its facts."""

    currency: str
    outstanding: Decimal
    borrowing_base: Decimal
    market_value: Decimal
    commitment: Decimal
    warning_ltv: Decimal
    liquidation_ltv: Decimal
    ltv: Decimal | None
    availability: Decimal
    over_advance: Decimal
    state: LtvState
    frozen: bool
    margin_call: MarginCall | None

    @property
    def in_breach(self) -> bool:
        """Above the warning line or over-advanced: a margin call is due."""
        return self.state != "ok" or self.over_advance > 0


def _state(outstanding: Decimal, market_value: Decimal, warning: Decimal, liq: Decimal) -> LtvState:
    if outstanding > liq * market_value:
        return "liquidation"
    if outstanding > warning * market_value:
        return "warning"
    return "ok"


def _ltv(outstanding: Decimal, market_value: Decimal) -> Decimal | None:
    if market_value == 0:
        return None if outstanding == 0 else INFINITE_LTV
    return _RATIO.divide(outstanding, market_value)


def _margin_call(
    outstanding: Decimal, bb: Decimal, market_value: Decimal, warning: Decimal, currency: str
) -> MarginCall:
    cash = max(ZERO, outstanding - warning * market_value, outstanding - bb)
    goods = max(ZERO, _RATIO.divide(outstanding, warning) - market_value)
    return MarginCall(cash_needed=_up(cash, currency), goods_value_needed=_up(goods, currency))


def assess(
    outstanding: Decimal,
    borrowing_base: Decimal,
    market_value: Decimal,
    commitment: Decimal,
    warning_ltv: Decimal,
    liquidation_ltv: Decimal,
    currency: str,
) -> CreditAssessment:
    """Assess the line (see the module docstring). Money >= 0 in `currency`; lines fractions.

    Raises InvalidAmount for a negative or float input, InvalidLtvLines unless
    0 < warning_ltv < liquidation_ltv.
    """
    check_currency(currency)
    out = _non_negative(outstanding, "outstanding")
    bb = _non_negative(borrowing_base, "borrowing_base")
    mv = _non_negative(market_value, "market_value")
    commit = _non_negative(commitment, "commitment")
    warn = to_decimal(warning_ltv, field="warning_ltv")
    liq = to_decimal(liquidation_ltv, field="liquidation_ltv")
    if not 0 < warn < liq:
        raise InvalidLtvLines(warn, liq)
    state = _state(out, mv, warn, liq)
    over_advanced = out > bb
    breach = state != "ok" or over_advanced
    return CreditAssessment(
        currency=currency,
        outstanding=out,
        borrowing_base=bb,
        market_value=mv,
        commitment=commit,
        warning_ltv=warn,
        liquidation_ltv=liq,
        ltv=_ltv(out, mv),
        availability=_down(max(ZERO, min(commit, bb) - out), currency),
        over_advance=_up(max(ZERO, out - bb), currency),
        state=state,
        frozen=state == "liquidation" or over_advanced,
        margin_call=_margin_call(out, bb, mv, warn, currency) if breach else None,
    )


@dataclass(frozen=True, slots=True)
class CreditEvent:
    """A change of the line's state worth telling the borrower and the lender about.

    The facts are those of the assessment AFTER the change; `trigger` says what caused it.
    """

    kind: CreditEventKind
    trigger: Trigger
    currency: str
    ltv: Decimal | None
    warning_ltv: Decimal
    liquidation_ltv: Decimal
    outstanding: Decimal
    borrowing_base: Decimal
    market_value: Decimal
    availability: Decimal
    over_advance: Decimal
    frozen: bool
    cash_needed: Decimal | None
    goods_value_needed: Decimal | None

    def facts(self) -> dict[str, str | bool | None]:
        """JSON-ready facts: amounts as `money_text` in the facility's currency ("1000000.00"),
        the LTV and its lines as `decimal_text` ("0.75"; an infinite LTV as "Infinity")."""
        out: dict[str, str | bool | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                ratio = f.name in _RATIO_FACTS
                value = decimal_text(value) if ratio else money_text(value, self.currency)
            out[f.name] = value
        return out


_RATIO_FACTS = frozenset({"ltv", "warning_ltv", "liquidation_ltv"})


def _event(kind: CreditEventKind, trigger: Trigger, a: CreditAssessment) -> CreditEvent:
    call = a.margin_call
    return CreditEvent(
        kind=kind,
        trigger=trigger,
        currency=a.currency,
        ltv=a.ltv,
        warning_ltv=a.warning_ltv,
        liquidation_ltv=a.liquidation_ltv,
        outstanding=a.outstanding,
        borrowing_base=a.borrowing_base,
        market_value=a.market_value,
        availability=a.availability,
        over_advance=a.over_advance,
        frozen=a.frozen,
        cash_needed=call.cash_needed if call else None,
        goods_value_needed=call.goods_value_needed if call else None,
    )


_SEVERITY: dict[str, int] = {"ok": 0, "warning": 1, "liquidation": 2}


def _kinds(previous: CreditAssessment | None, current: CreditAssessment) -> list[CreditEventKind]:
    was = _SEVERITY[previous.state] if previous else 0
    was_over = previous is not None and previous.over_advance > 0
    was_frozen = previous is not None and previous.frozen
    was_breach = previous is not None and previous.in_breach
    now = _SEVERITY[current.state]
    kinds: list[CreditEventKind] = []
    if was < 1 <= now:
        kinds.append("warning_line_crossed")
    if was < 2 <= now:
        kinds.append("liquidation_line_crossed")
    if not was_over and current.over_advance > 0:
        kinds.append("over_advance")
    if not was_frozen and current.frozen:
        kinds.append("frozen")
    if was_frozen and not current.frozen:
        kinds.append("unfrozen")
    if was_breach and not current.in_breach:
        kinds.append("cured")
    return kinds


def transitions(
    previous: CreditAssessment | None, current: CreditAssessment, trigger: Trigger
) -> list[CreditEvent]:
    """Events between two assessments, in this order when several happen at once:
    warning_line_crossed, liquidation_line_crossed (a jump from ok emits both), over_advance,
    frozen, unfrozen, cured (back within the warning line with no over-advance).

    `previous` None (first assessment) counts as "ok, not frozen, no over-advance". Only
    changes produce events: staying above a line does not repeat its event.
    """
    if trigger not in TRIGGERS:
        raise InvalidInput(f"unknown trigger {trigger!r}; expected one of {TRIGGERS}")
    return [_event(kind, trigger, current) for kind in _kinds(previous, current)]


def check_drawdown(
    facility_active: bool,
    frozen: bool,
    amount: Decimal,
    availability: Decimal,
    facility_id: str,
    currency: str | None = None,
) -> Decimal:
    """Refuse a drawdown the line does not allow; return the amount (currency units) if allowed.
    `currency` only writes the refusal's amounts (`money_text`).

    Checked in this order: InvalidAmount (zero, negative, float), FacilityInactive,
    FacilityFrozen, InsufficientAvailability (amount > availability; drawing exactly the
    availability is allowed).
    """
    value = require_positive(to_decimal(amount, field="drawdown amount"), field="drawdown amount")
    if not facility_active:
        raise FacilityInactive(f"facility {facility_id} is not active", facility_id=facility_id)
    if frozen:
        raise FacilityFrozen(
            f"facility {facility_id} is frozen: no drawdowns until cured", facility_id=facility_id
        )
    available = to_decimal(availability, field="availability")
    if value > available:
        raise InsufficientAvailability(facility_id, value, available, currency)
    return value


def check_release(outstanding: Decimal, bb_after_release: Decimal, facility_id: str, currency: str) -> None:
    """Refuse a release of goods after which the BB would not cover the outstanding.

    ReleaseRefused.repay_first = outstanding - BB after the release, rounded up to the minor
    unit: repaying it first makes the same release acceptable. A BB exactly equal to the
    outstanding is enough.
    """
    out = _non_negative(outstanding, "outstanding")
    bb = _non_negative(bb_after_release, "bb_after_release")
    if out > bb:
        bb_shown, out_shown = money_text(_down(bb, currency), currency), money_text(out, currency)
        raise ReleaseRefused(
            facility_id,
            _up(out - bb, currency),
            f"the borrowing base after the release ({currency} {bb_shown}) would not cover "
            f"the outstanding ({currency} {out_shown})",
        )
