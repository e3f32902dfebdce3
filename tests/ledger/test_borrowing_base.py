"""Borrowing base, availability and LTV, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ledger.core.borrowing_base import SkuExposure, availability, borrowing_base, certify, ltv
from ledger.core.eligibility import Reason
from ledger.core.lot import Lot, LotStatus
from ledger.core.price import PricePoint
from tests.ledger.world import facility

D = Decimal
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = LotStatus


def copper(pledged: str = "100", eligible: str = "80", price: str | None = "8000", haircut: str = "0.1"):
    return SkuExposure("CU-CATH", D(pledged), D(eligible), D(price) if price else None, D(haircut),
                       D("0.65"), D("0.6"))


def steel(pledged: str = "50", eligible: str = "50", price: str | None = "600", haircut: str = "0.2"):
    return SkuExposure("ST-COIL", D(pledged), D(eligible), D(price) if price else None, D(haircut),
                       D("0.50"), D("1"))


def test_two_skus_with_a_concentration_limit_and_reserves():
    bb = borrowing_base([steel(), copper()], D("10000"))
    cu, st = bb.lines  # sorted by SKU id
    # copper: 80 t x 8000 = 640 000 eligible; x (1 - 0.10) x 0.65 = 374 400 lendable
    assert (cu.sku_id, cu.eligible_value, cu.lendable) == ("CU-CATH", D("640000"), D("374400"))
    # steel: 50 t x 600 = 30 000; x (1 - 0.20) x 0.50 = 12 000
    assert (st.eligible_value, st.lendable) == (D("30000"), D("12000"))
    # total lendable 386 400; copper may be at most 60 % of it: 231 840, the rest is excess
    assert (cu.counted, cu.concentration_excess) == (D("231840"), D("142560"))
    assert (st.counted, st.concentration_excess) == (D("12000"), D("0"))
    assert bb.gross == D("243840")
    assert bb.concentration_excess == D("142560")
    assert bb.borrowing_base == D("233840")  # minus 10 000 reserves
    # market value of pledged goods (not just eligible): 100 x 8000 + 50 x 600
    assert (cu.market_value, st.market_value, bb.market_value) == (D("800000"), D("30000"), D("830000"))


def test_a_single_sku_portfolio_is_capped_at_its_concentration_limit():
    bb = borrowing_base([copper(eligible="100", haircut="0")], D("0"))
    # 100 x 8000 x 0.65 = 520 000 lendable, 60 % of it counts
    assert bb.borrowing_base == D("312000.0")


def test_reserves_above_the_gross_leave_a_zero_not_a_negative_base():
    bb = borrowing_base([steel()], D("50000"))
    assert bb.gross == D("12000") and bb.borrowing_base == 0


def test_a_sku_without_a_price_counts_nothing():
    bb = borrowing_base([copper(price=None), steel()], D("0"))
    assert bb.lines[0].market_value == 0 and bb.lines[0].lendable == 0
    assert bb.borrowing_base == D("12000")


def test_no_exposure_no_base():
    bb = borrowing_base([], D("0"))
    assert (bb.lines, bb.borrowing_base, bb.market_value) == ((), 0, 0)


def test_availability_is_the_smaller_of_commitment_and_base_less_outstanding():
    assert availability(D("5000000"), D("233840"), D("200000")) == D("33840")
    assert availability(D("100000"), D("233840"), D("50000")) == D("50000")
    assert availability(D("5000000"), D("233840"), D("300000")) == 0  # over-advance: never negative


def test_ltv_is_outstanding_over_market_value():
    assert ltv(D("415000"), D("830000")) == D("0.5")
    assert ltv(D("0"), D("0")) is None
    assert ltv(D("1"), D("0")) == D("Infinity")


def lot(n: int, sku: str = "CU-CATH", qty: str = "25", **kw: object) -> Lot:
    args: dict = dict(
        lot_id=f"L{n}", facility_id="F1", epc=f"E{n}", sku_id=sku, quantity=D(qty), site_id="SH1",
        zone_id="SH1-A", status=S.PLEDGED, pledged=True, verified=True, received_at=NOW - timedelta(days=5),
    )
    args.update(kw)
    return Lot(**args)


def test_a_certificate_judges_every_lot_and_sums_the_ineligible_by_reason():
    f = facility(reserves=D("0"))
    lots = [
        lot(3),
        lot(1),
        lot(2, verified=False),
        lot(4, qty="10", status=S.QUARANTINED),
        lot(5, sku="ST-COIL", qty="40"),
        lot(6, sku="ST-COIL", qty="5", site_id="QD2"),
        lot(7, qty="3", status=S.EXPECTED, received_at=None),
    ]
    prices = {
        "CU-CATH": PricePoint("CU-CATH", NOW - timedelta(hours=1), D("8000"), "EUR", "LME"),
        "ST-COIL": PricePoint("ST-COIL", NOW - timedelta(hours=1), D("600"), "EUR", "LME"),
    }
    cert = certify(f, lots, prices, {"CU-CATH": D("0.1"), "ST-COIL": D("0.2")}, NOW)
    assert [le.lot.lot_id for le in cert.lots] == ["L1", "L2", "L3", "L4", "L5", "L6", "L7"]
    assert cert.ineligible_by_reason() == {
        Reason.UNVERIFIED: D("25"),
        Reason.QUARANTINED: D("10"),
        Reason.OUTSIDE_APPROVED_SITE: D("5"),
        Reason.NOT_IN_WAREHOUSE: D("3"),
    }
    cu, st = cert.base.lines
    assert (cu.eligible_quantity, st.eligible_quantity) == (D("50"), D("40"))
    # market value: pledged goods in the warehouse, eligible or not (the expected lot is not in)
    assert cu.market_value == (25 + 25 + 25 + 10) * D("8000")
    assert st.market_value == 45 * D("600")
    # copper 50 x 8000 x 0.9 x 0.65 = 234 000; steel 40 x 600 x 0.8 x 0.5 = 9 600; total 243 600
    # copper cap 0.6 x 243 600 = 146 160
    assert cert.base.borrowing_base == D("146160") + D("9600")
    assert (cert.facility_id, cert.as_of) == ("F1", NOW)


def test_a_certificate_without_prices_counts_nothing_and_says_stale():
    cert = certify(facility(), [lot(1)], {}, {}, NOW)
    assert cert.ineligible_by_reason() == {Reason.STALE_PRICE: D("25")}
    assert cert.base.borrowing_base == 0
    assert all(line.haircut == D("0.60") for line in cert.base.lines)  # no haircut known: the cap
