"""Reference data: sites, zones, SKUs, borrowers and facilities (pure, frozen).

Units: quantities are in the SKU's unit of measure (`uom`); masses in kg; rates and LTV lines
are fractions (Decimal("0.65") = 65 %); money in the facility's currency; durations in days
or seconds as named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from ledger.core.errors import CurrencyMismatch, InvalidAmount, InvalidReference

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:")


def check_id(kind: str, ident: str) -> str:
    """Ids are 1-64 characters of letters, digits and `_.-:`; anything else is refused."""
    if not isinstance(ident, str) or not 0 < len(ident) <= 64 or not set(ident) <= _ID_CHARS:
        raise InvalidReference(f"{kind} id {ident!r} must be 1-64 characters of [A-Za-z0-9_.:-]")
    return ident


def _finite(name: str, value: Decimal) -> None:
    # Checked before any comparison: a NaN Decimal raises decimal.InvalidOperation when compared,
    # Infinity passes "> 0", and a float or int would only fail later, inside the store.
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidAmount(name, value, "must be a finite Decimal")


def _fraction(name: str, value: Decimal, *, allow_zero: bool = False, upper: Decimal = Decimal(1)) -> None:
    _finite(name, value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= upper):
        raise InvalidAmount(name, value, f"must be in {'[0' if allow_zero else '(0'}, {upper}]")


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    name: str

    def __post_init__(self) -> None:
        check_id("site", self.site_id)


@dataclass(frozen=True, slots=True)
class Zone:
    zone_id: str
    site_id: str
    name: str

    def __post_init__(self) -> None:
        check_id("zone", self.zone_id)
        check_id("site", self.site_id)


@dataclass(frozen=True, slots=True)
class Sku:
    """A stock-keeping unit; `unit_mass_kg` is the nominal mass of one `uom` unit."""

    sku_id: str
    name: str
    uom: str
    unit_mass_kg: Decimal
    mass_tolerance: Decimal  # fraction of nominal mass a weighing may deviate
    currency: str  # the currency its prices are quoted in

    def __post_init__(self) -> None:
        check_id("sku", self.sku_id)
        _finite("unit_mass_kg", self.unit_mass_kg)
        if self.unit_mass_kg <= 0:
            raise InvalidAmount("unit_mass_kg", self.unit_mass_kg, "must be greater than zero")
        _fraction("mass_tolerance", self.mass_tolerance, allow_zero=True)
        check_currency(self.currency)


@dataclass(frozen=True, slots=True)
class Borrower:
    borrower_id: str
    name: str
    tier: str = "B"

    def __post_init__(self) -> None:
        check_id("borrower", self.borrower_id)


def check_currency(code: str) -> str:
    if not (isinstance(code, str) and len(code) == 3 and code.isalpha() and code.isupper()):
        raise InvalidReference(f"currency {code!r} must be a 3-letter ISO 4217 code", currency=code)
    return code


@dataclass(frozen=True, slots=True)
class SkuTerms:
    """What a facility lends against one SKU: advance rate and concentration limit (fractions)."""

    sku_id: str
    advance_rate: Decimal
    concentration_limit: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        _fraction(f"advance_rate[{self.sku_id}]", self.advance_rate)
        _fraction(f"concentration_limit[{self.sku_id}]", self.concentration_limit)


@dataclass(frozen=True, slots=True)
class Facility:
    """A revolving credit facility secured by pledged goods.

    Invariants (checked on construction): commitment > 0, reserves >= 0, every advance rate and
    concentration limit in (0, 1], 0 < warning_ltv < liquidation_ltv, floor <= cap.
    """

    facility_id: str
    borrower_id: str
    currency: str
    commitment: Decimal
    terms: Mapping[str, SkuTerms]
    approved_sites: frozenset[str]
    reserves: Decimal = Decimal(0)
    max_age_days: int = 365
    liquidation_horizon_days: int = 20
    warning_ltv: Decimal = Decimal("0.70")
    liquidation_ltv: Decimal = Decimal("0.85")
    max_price_age_s: int = 3 * 86400
    haircut_floor: Decimal = Decimal("0.02")
    haircut_cap: Decimal = Decimal("0.60")
    status: str = "active"

    def __post_init__(self) -> None:
        check_id("facility", self.facility_id)
        check_id("borrower", self.borrower_id)
        check_currency(self.currency)
        _finite("commitment", self.commitment)
        _finite("reserves", self.reserves)
        if self.commitment <= 0:
            raise InvalidAmount("commitment", self.commitment, "must be greater than zero")
        if self.reserves < 0:
            raise InvalidAmount("reserves", self.reserves, "must not be negative")
        if self.max_age_days <= 0 or self.liquidation_horizon_days <= 0 or self.max_price_age_s <= 0:
            raise InvalidReference("max_age_days, liquidation_horizon_days and max_price_age_s must be > 0")
        _fraction("warning_ltv", self.warning_ltv)
        _fraction("liquidation_ltv", self.liquidation_ltv, upper=Decimal(10))
        if not self.warning_ltv < self.liquidation_ltv:
            raise InvalidReference("warning_ltv must be below liquidation_ltv")
        _fraction("haircut_floor", self.haircut_floor, allow_zero=True)
        _fraction("haircut_cap", self.haircut_cap, allow_zero=True)
        if self.haircut_floor > self.haircut_cap:
            raise InvalidReference("haircut_floor must not exceed haircut_cap")
        if not self.terms:
            raise InvalidReference("a facility needs terms (advance rate) for at least one SKU")
        for sku_id, terms in self.terms.items():
            # the store keeps terms under terms.sku_id and positions under the key: they must agree
            if terms.sku_id != sku_id:
                raise InvalidReference(f"terms for SKU {sku_id!r} are written for SKU {terms.sku_id!r}")
        if self.status not in ("active", "closed"):
            raise InvalidReference(f"facility status {self.status!r} must be active or closed")
        object.__setattr__(self, "terms", MappingProxyType(dict(self.terms)))

    def check_sku_currency(self, sku: Sku) -> None:
        """A facility lends only against SKUs priced in its own currency."""
        if sku.currency != self.currency:
            raise CurrencyMismatch(
                self.currency, sku.currency, f"SKU {sku.sku_id} of facility {self.facility_id}"
            )
