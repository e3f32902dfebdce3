"""How amounts, rates and quantities are written out (API answers, CSV, event facts): plain
digits, the currency's minor unit at least, and nothing lost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.money import decimal_text, minor_unit, money_text

D = Decimal


@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [
        ("100", "EUR", "100.00"),
        ("100.10", "EUR", "100.10"),
        ("100.1", "EUR", "100.10"),
        ("1.00E+6", "EUR", "1000000.00"),  # what asyncpg hands back for numeric 1000000
        ("122304.000000000", "EUR", "122304.00"),  # a computed borrowing base
        ("122304.125000", "EUR", "122304.125"),  # more than cents only where the value has them
        ("0E-9", "EUR", "0.00"),
        ("-0", "EUR", "0.00"),
        ("-5", "EUR", "-5.00"),
        ("1.5E-7", "EUR", "0.00000015"),
        ("1500", "JPY", "1500"),
        ("1.5E+3", "JPY", "1500"),
        ("2.5", "KWD", "2.500"),
        ("Infinity", "EUR", "Infinity"),
    ],
)
def test_money_is_plain_with_the_minor_unit(value: str, currency: str, text: str) -> None:
    assert money_text(D(value), currency) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.020000", "0.02"),
        ("0.65", "0.65"),
        ("1.00E+6", "1000000"),
        ("10", "10"),
        ("0E-8", "0"),
        ("-0.50", "-0.5"),
    ],
)
def test_rates_and_quantities_are_plain_without_trailing_zeros(value: str, text: str) -> None:
    assert decimal_text(D(value)) == text


decimals = st.decimals(allow_nan=False, allow_infinity=False, min_value=D("-1E+30"), max_value=D("1E+30"))


@given(decimals, st.sampled_from(["EUR", "JPY", "KWD", "USD"]))
def test_money_text_loses_nothing(value: Decimal, currency: str) -> None:
    text = money_text(value, currency)
    assert D(text) == value
    assert "E" not in text and "e" not in text
    decimals_shown = len(text.partition(".")[2])
    assert decimals_shown >= minor_unit(currency)
    if decimals_shown > minor_unit(currency):
        assert not text.endswith("0")  # more than the minor unit only for significant digits


@given(decimals)
def test_decimal_text_loses_nothing(value: Decimal) -> None:
    text = decimal_text(value)
    assert D(text) == value
    assert "E" not in text and "e" not in text
    assert "." not in text or not text.endswith("0")
