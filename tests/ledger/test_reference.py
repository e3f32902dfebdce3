"""Reference data refuses what contradicts itself, with the field and the value in the message."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest

from ledger.core.errors import CurrencyMismatch, InvalidAmount, InvalidReference
from ledger.core.reference import Site, Sku, SkuTerms, Zone, check_currency, check_id
from tests.ledger.world import copper, facility

D = Decimal


@pytest.mark.parametrize("ident", ["SH1", "E2801170:lot_7.a-b", "x" * 64])
def test_ids_of_letters_digits_and_separators_are_accepted(ident):
    assert check_id("site", ident) == ident


@pytest.mark.parametrize("ident", ["", "x" * 65, "hall A", "lot/1", "ünïcode", None])
def test_other_ids_are_refused_naming_the_kind(ident):
    with pytest.raises(InvalidReference, match="site id"):
        check_id("site", ident)


def test_a_zone_needs_valid_ids_for_itself_and_its_site():
    assert Zone("SH1-A", "SH1", "Hall A").site_id == "SH1"
    with pytest.raises(InvalidReference, match="site id"):
        Zone("SH1-A", "SH 1", "Hall A")
    with pytest.raises(InvalidReference, match="site id"):
        Site("", "nameless")


@pytest.mark.parametrize("code", ["eur", "EURO", "E1R", "", 978])
def test_currencies_are_three_upper_case_letters(code):
    with pytest.raises(InvalidReference, match="ISO 4217"):
        check_currency(code)
    assert check_currency("CNY") == "CNY"


def test_a_sku_needs_a_positive_mass_and_a_tolerance_between_zero_and_one():
    with pytest.raises(InvalidAmount, match="unit_mass_kg must be greater than zero"):
        Sku("CU", "Copper", "t", D("0"), D("0.01"), "EUR")
    with pytest.raises(InvalidAmount, match=r"mass_tolerance must be in \[0, 1\]"):
        Sku("CU", "Copper", "t", D("1000"), D("1.5"), "EUR")
    assert Sku("CU", "Copper", "t", D("1000"), D("0"), "EUR").mass_tolerance == 0


@pytest.mark.parametrize("bad", [D("NaN"), D("Infinity"), 1000.0, 1000])
def test_a_sku_mass_must_be_a_finite_decimal(bad):
    with pytest.raises(InvalidAmount, match="unit_mass_kg must be a finite Decimal"):
        Sku("CU", "Copper", "t", bad, D("0.01"), "EUR")


def test_advance_rate_and_concentration_limit_are_fractions_above_zero():
    with pytest.raises(InvalidAmount, match=r"advance_rate\[CU\] must be in \(0, 1\]"):
        SkuTerms("CU", D("0"))
    with pytest.raises(InvalidAmount, match=r"advance_rate\[CU\]"):
        SkuTerms("CU", D("1.01"))
    with pytest.raises(InvalidAmount, match=r"concentration_limit\[CU\]"):
        SkuTerms("CU", D("0.5"), D("0"))
    with pytest.raises(InvalidAmount, match=r"advance_rate\[CU\] must be a finite Decimal"):
        SkuTerms("CU", D("NaN"))
    assert SkuTerms("CU", D("1")).concentration_limit == 1


def test_the_world_facility_is_valid_and_its_terms_are_read_only():
    f = facility()
    assert f.commitment == D("5000000")
    with pytest.raises(TypeError):
        f.terms["XX"] = SkuTerms("XX", D("0.5"))  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        f.reserves = D(0)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"commitment": D("0")}, InvalidAmount, "commitment must be greater than zero"),
        ({"commitment": D("-1")}, InvalidAmount, "commitment must be greater than zero"),
        ({"commitment": D("Infinity")}, InvalidAmount, "commitment must be a finite Decimal"),
        ({"commitment": 5_000_000.0}, InvalidAmount, "commitment must be a finite Decimal"),
        ({"reserves": D("-0.01")}, InvalidAmount, "reserves must not be negative"),
        ({"reserves": D("NaN")}, InvalidAmount, "reserves must be a finite Decimal"),
        ({"max_age_days": 0}, InvalidReference, "must be > 0"),
        ({"liquidation_horizon_days": -1}, InvalidReference, "must be > 0"),
        ({"max_price_age_s": 0}, InvalidReference, "must be > 0"),
        ({"warning_ltv": D("0.9"), "liquidation_ltv": D("0.8")}, InvalidReference, "below liquidation"),
        ({"warning_ltv": D("0.8"), "liquidation_ltv": D("0.8")}, InvalidReference, "below liquidation"),
        ({"haircut_floor": D("0.5"), "haircut_cap": D("0.4")}, InvalidReference, "must not exceed"),
        ({"haircut_cap": D("1.2")}, InvalidAmount, "haircut_cap"),
        ({"terms": {}}, InvalidReference, "at least one SKU"),
        ({"terms": {"CU-CATH": SkuTerms("ST-COIL", D("0.5"))}}, InvalidReference,
         "terms for SKU 'CU-CATH' are written for SKU 'ST-COIL'"),
        ({"status": "frozen"}, InvalidReference, "active or closed"),
        ({"currency": "eur"}, InvalidReference, "ISO 4217"),
        ({"facility_id": "F 1"}, InvalidReference, "facility id"),
    ],
)
def test_a_facility_that_contradicts_itself_is_refused(changes, error, message):
    with pytest.raises(error, match=message):
        facility(**changes)


def test_a_facility_lends_only_against_skus_in_its_own_currency():
    f = facility()
    f.check_sku_currency(copper())  # EUR and EUR: fine
    usd = Sku("CU-CATH", "Copper cathode", "t", D("1000"), D("0.01"), "USD")
    with pytest.raises(CurrencyMismatch) as err:
        f.check_sku_currency(usd)
    assert (err.value.expected, err.value.got) == ("EUR", "USD")
    assert "expected EUR, got USD" in str(err.value) and "CU-CATH" in str(err.value)
