"""Eligibility: every lot that does not count says why, with one reason, the first that applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.core.eligibility import LotEligibility, Reason, ineligibility, is_aged, static_reason
from ledger.core.lot import Lot, LotStatus
from ledger.core.price import PricePoint, is_stale, latest_at
from tests.ledger.world import facility

D = Decimal
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = LotStatus
F = facility()  # approved site SH1; copper and steel financed; 180 days; prices stale after 3 days


def good_lot(**kw: object) -> Lot:
    """Pledged, verified copper in an approved site, received 10 days ago."""
    args: dict = dict(
        lot_id="L1", facility_id="F1", epc="E1", sku_id="CU-CATH", quantity=D("25"), site_id="SH1",
        zone_id="SH1-A", status=S.PLEDGED, pledged=True, verified=True,
        received_at=NOW - timedelta(days=10),
    )
    args.update(kw)
    return Lot(**args)


def fresh_price(age: timedelta = timedelta(hours=1)) -> PricePoint:
    return PricePoint("CU-CATH", NOW - age, D("8000"), "EUR", "LME")


def test_pledged_verified_fresh_goods_in_an_approved_site_are_eligible():
    assert ineligibility(good_lot(), F, fresh_price(), NOW) is None
    assert LotEligibility(good_lot(), None).eligible


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": S.EXPECTED, "received_at": None}, Reason.NOT_IN_WAREHOUSE),
        ({"status": S.MISSING}, Reason.NOT_IN_WAREHOUSE),
        ({"status": S.RELEASED, "pledged": False}, Reason.NOT_IN_WAREHOUSE),
        ({"status": S.REMOVED}, Reason.NOT_IN_WAREHOUSE),
        ({"status": S.RELEASE_AUTHORISED}, Reason.RELEASE_AUTHORISED),
        ({"status": S.QUARANTINED}, Reason.QUARANTINED),
        ({"status": S.IN_STOCK, "pledged": False}, Reason.NOT_PLEDGED),
        ({"sku_id": "AL-INGOT"}, Reason.NOT_FINANCED_SKU),
        ({"site_id": "QD2", "zone_id": "QD2-Y"}, Reason.OUTSIDE_APPROVED_SITE),
        ({"verified": False}, Reason.UNVERIFIED),
        ({"received_at": NOW - timedelta(days=181)}, Reason.AGED),
    ],
)
def test_each_ineligible_lot_carries_its_reason(changes, reason):
    lot = good_lot(**changes)
    assert ineligibility(lot, F, fresh_price(), NOW) == reason
    assert not LotEligibility(lot, reason).eligible


def test_a_price_older_than_the_facility_allows_makes_the_lot_stale():
    assert ineligibility(good_lot(), F, fresh_price(timedelta(days=3, seconds=1)), NOW) == Reason.STALE_PRICE
    assert ineligibility(good_lot(), F, fresh_price(timedelta(days=3)), NOW) is None  # exactly 3 days: fresh
    assert ineligibility(good_lot(), F, None, NOW) == Reason.STALE_PRICE


def test_goods_older_than_the_limit_are_aged_the_day_after_the_limit():
    assert not is_aged(good_lot(received_at=NOW - timedelta(days=180)), F, NOW)
    assert is_aged(good_lot(received_at=NOW - timedelta(days=180, seconds=1)), F, NOW)
    assert not is_aged(good_lot(received_at=None), F, NOW)


def test_the_first_reason_wins_when_several_apply():
    # quarantined, unpledged, outside the approved site, unverified, aged and without a price
    lot = good_lot(
        status=S.QUARANTINED, pledged=False, site_id="QD2", verified=False,
        received_at=NOW - timedelta(days=400),
    )
    assert ineligibility(lot, F, None, NOW) == Reason.QUARANTINED
    lot = good_lot(pledged=False, status=S.IN_STOCK, site_id="QD2", verified=False)
    assert ineligibility(lot, F, None, NOW) == Reason.NOT_PLEDGED
    lot = good_lot(site_id="QD2", verified=False, received_at=NOW - timedelta(days=400))
    assert ineligibility(lot, F, None, NOW) == Reason.OUTSIDE_APPROVED_SITE
    lot = good_lot(verified=False, received_at=NOW - timedelta(days=400))
    assert ineligibility(lot, F, None, NOW) == Reason.UNVERIFIED
    assert ineligibility(good_lot(received_at=NOW - timedelta(days=400)), F, None, NOW) == Reason.AGED


def test_static_reasons_do_not_depend_on_time_or_price():
    assert static_reason(good_lot(received_at=NOW - timedelta(days=999)), F) is None
    assert static_reason(good_lot(verified=False), F) == Reason.UNVERIFIED


def test_the_latest_price_at_a_time_ignores_later_observations_and_input_order():
    old = PricePoint("CU-CATH", NOW - timedelta(days=2), D("7900"), "EUR", "LME")
    new = PricePoint("CU-CATH", NOW - timedelta(days=1), D("8000"), "EUR", "LME")
    future = PricePoint("CU-CATH", NOW + timedelta(days=1), D("9000"), "EUR", "LME")
    assert latest_at([new, future, old], NOW) == new
    assert latest_at([future], NOW) is None
    assert latest_at([old, new], NOW - timedelta(days=2)) == old


def test_no_price_at_all_is_stale():
    assert is_stale(None, NOW, 10**9)
    assert not is_stale(fresh_price(), NOW, 3600)
    assert is_stale(fresh_price(timedelta(seconds=3601)), NOW, 3600)
