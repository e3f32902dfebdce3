"""Properties of the pure core (hypothesis): the invariants the ledger promises, for any input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.borrowing_base import SkuExposure, borrowing_base, certify
from ledger.core.errors import LedgerError
from ledger.core.haircut import haircut
from ledger.core.journal import GENESIS, JournalEntry, make_entry, replay, verify_chain
from ledger.core.lot import Lot, LotStatus, Movement, MovementKind, apply_movement
from ledger.core.price import PricePoint
from ledger.core.reference import Facility, SkuTerms

D = Decimal
S = LotStatus
K = MovementKind
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SKUS = ("CU-CATH", "ST-COIL", "AL-INGOT")
SITES = ("SH1", "QD2")
ZONES = ("SH1-A", "SH1-B", "QD2-Y")

# Small budgets: the whole tests/ledger run stays under a minute; the ci profile can raise them.
core = settings(deadline=None, max_examples=60)


def decimals(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


fractions = decimals("0.01", "1", 2)
quantities = decimals("0.001", "5000", 3)
prices = decimals("0.01", "100000", 2)


@st.composite
def exposures(draw: st.DrawFn, sku_id: str) -> SkuExposure:
    pledged = draw(decimals("0", "5000", 3))
    eligible = draw(decimals("0", str(pledged), 3))
    return SkuExposure(
        sku_id, pledged, eligible, draw(st.none() | prices), draw(decimals("0", "1", 4)),
        draw(fractions), draw(fractions),
    )


portfolios = st.lists(st.sampled_from(SKUS), unique=True).flatmap(
    lambda ids: st.tuples(*[exposures(s) for s in ids]).map(list)
)


@core
@given(portfolios, decimals("0", "1000000", 2))
def test_the_base_never_exceeds_market_value_times_advance_rate(xs, reserves):
    bb = borrowing_base(xs, reserves)
    ceiling = sum(((x.pledged_quantity * (x.price or 0)) * x.advance_rate for x in xs), D(0))
    assert 0 <= bb.borrowing_base <= bb.gross <= ceiling
    assert bb.gross + bb.concentration_excess == sum((line.lendable for line in bb.lines), D(0))


@core
@given(portfolios, decimals("0", "100000", 2), st.data())
def test_more_eligible_goods_never_lower_the_base(xs, reserves, data):
    if not xs:
        return
    i = data.draw(st.integers(0, len(xs) - 1))
    extra = data.draw(quantities)
    more = list(xs)
    more[i] = replace(xs[i], pledged_quantity=xs[i].pledged_quantity + extra,
                      eligible_quantity=xs[i].eligible_quantity + extra)
    assert borrowing_base(more, reserves).borrowing_base >= borrowing_base(xs, reserves).borrowing_base


# --- certificates from lots ---------------------------------------------------------------------

def a_facility(terms: dict[str, tuple[Decimal, Decimal]], reserves: Decimal) -> Facility:
    return Facility(
        "F1", "B1", "EUR", D("5000000"), {s: SkuTerms(s, a, c) for s, (a, c) in terms.items()},
        frozenset({"SH1"}), reserves=reserves, max_age_days=90,
    )


facilities = st.builds(
    a_facility,
    st.dictionaries(st.sampled_from(SKUS), st.tuples(fractions, fractions), min_size=1),
    decimals("0", "50000", 2),
)


@st.composite
def lots(draw: st.DrawFn, n: int) -> Lot:
    status = draw(st.sampled_from(list(S)))
    settled = status in (S.PLEDGED, S.IN_STOCK, S.RELEASED)  # their status says whether pledged
    pledged = status == S.PLEDGED if settled else draw(st.booleans())
    site = draw(st.sampled_from(SITES))
    return Lot(
        f"L{n}", "F1", f"E{n}", draw(st.sampled_from(SKUS)), draw(quantities), site,
        draw(st.sampled_from(ZONES)), status, pledged, draw(st.booleans()),
        None if status == S.EXPECTED else NOW - timedelta(days=draw(st.integers(0, 120))),
    )


def eligible_lot(n: int, sku_id: str, qty: Decimal) -> Lot:
    return Lot(f"N{n}", "F1", f"N{n}", sku_id, qty, "SH1", "SH1-A", S.PLEDGED, True, True, NOW)


@st.composite
def markets(draw: st.DrawFn) -> tuple[dict[str, PricePoint | None], dict[str, Decimal]]:
    points: dict[str, PricePoint | None] = {}
    cuts: dict[str, Decimal] = {}
    for s in SKUS:
        age = draw(st.none() | st.integers(0, 5 * 86400))
        at = NOW - timedelta(seconds=age or 0)
        points[s] = None if age is None else PricePoint(s, at, draw(prices), "EUR", "x")
        sigma = draw(st.none() | decimals("0", "0.1", 4))
        cuts[s] = haircut(sigma, 20, D("0.02"), D("0.6"))
    return points, cuts


lot_lists = st.integers(0, 12).flatmap(lambda k: st.tuples(*[lots(i) for i in range(k)]).map(list))


@core
@given(facilities, lot_lists, markets(), st.sampled_from(SKUS), quantities)
def test_adding_an_eligible_lot_never_lowers_a_certified_base(f, held, market, sku_id, qty):
    points, cuts = market
    before = certify(f, held, points, cuts, NOW)
    after = certify(f, [*held, eligible_lot(1, sku_id, qty)], points, cuts, NOW)
    assert after.base.borrowing_base >= before.base.borrowing_base
    ceiling = sum((line.market_value * line.advance_rate for line in after.base.lines), D(0))
    assert after.base.borrowing_base <= ceiling


@core
@given(facilities, lot_lists, markets())
def test_a_certificate_counts_every_eligible_lot_once(f, held, market):
    points, cuts = market
    cert = certify(f, held, points, cuts, NOW)
    assert len(cert.lots) == len(held)
    eligible = sum((le.lot.quantity for le in cert.lots if le.eligible), D(0))
    assert sum((line.eligible_quantity for line in cert.base.lines), D(0)) == eligible
    ineligible = sum(cert.ineligible_by_reason().values(), D(0))
    assert eligible + ineligible == sum((lot.quantity for lot in held), D(0))


# --- the journal --------------------------------------------------------------------------------

@st.composite
def movements(draw: st.DrawFn) -> Movement:
    kind = draw(st.sampled_from([k for k in K if k != K.REGISTRATION]))
    return Movement(
        kind,
        draw(st.sampled_from(["L1", "L2", "L3"])),
        NOW,  # the time is set by the history below
        (draw(st.sampled_from(["gate-1:1", "scale-2:9", "cam-3:4"])),),
        zone_id=draw(st.none() | st.sampled_from(ZONES)),
        quantity=draw(st.none() | quantities),
        status=draw(st.none() | st.sampled_from(list(S))),
        verified=draw(st.none() | st.booleans()),
        reason=draw(st.none() | st.sampled_from(["damage", "recount"])),
    )


def start(n: int, received: bool) -> Lot:
    return Lot(f"L{n}", "F1", f"E{n}", "CU-CATH", D("25"), "SH1", "SH1-A",
               S.IN_STOCK if received else S.EXPECTED, received_at=NOW if received else None)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[JournalEntry], list[dict[str, Lot]]]:
    """A journal built by applying random movements (refused ones are skipped), and the lot
    states after each entry."""
    entries: list[JournalEntry] = []
    states: list[dict[str, Lot]] = []
    current: dict[str, Lot] = {}
    at, prev = NOW, GENESIS

    def journal(kind: MovementKind, lot: Lot, mv: Movement | None) -> None:
        nonlocal prev
        evidence, reason = (mv.evidence, mv.reason) if mv else ((), None)
        e = make_entry(prev, len(entries) + 1, at, kind, lot, evidence, reason)
        entries.append(e)
        prev = e.hash
        current[lot.lot_id] = lot
        states.append(dict(current))

    for n in (1, 2, 3):
        journal(K.REGISTRATION, start(n, draw(st.booleans())), None)
    for mv in draw(st.lists(movements(), max_size=30)):
        at += timedelta(minutes=draw(st.integers(0, 90)))  # equal times happen too
        try:
            after = apply_movement(current[mv.lot_id], replace(mv, at=at))
        except LedgerError:
            continue
        journal(mv.kind, after, mv)
    return entries, states


@core
@given(histories())
def test_replaying_the_journal_reproduces_the_lots(history):
    entries, states = history
    assert verify_chain("F1", entries) is None
    assert replay(entries) == states[-1]
    for e in entries:
        # as of an entry's time: the state after the last entry stamped at or before it
        last = max(j for j, x in enumerate(entries) if x.at <= e.at)
        assert replay(entries, as_of=e.at) == states[last]
    assert replay(entries, as_of=NOW - timedelta(seconds=1)) == {}


@core
@given(histories())
def test_reachable_lots_stay_consistent(history):
    _, states = history
    for lot in states[-1].values():
        assert (lot.status == S.PLEDGED) <= lot.pledged
        assert (lot.status in (S.IN_STOCK, S.RELEASED)) <= (not lot.pledged)
        # goods count as in the warehouse (market value, ageing) only after a receipt
        assert lot.status == S.EXPECTED or lot.received_at is not None


def _edits(e: JournalEntry) -> dict[str, JournalEntry]:
    lot = e.lot
    other_status = S.QUARANTINED if lot.status != S.QUARANTINED else S.MISSING
    return {
        "quantity": replace(e, lot=replace(lot, quantity=lot.quantity + D("0.001"))),
        "status": replace(e, lot=replace(lot, status=other_status)),
        "pledged": replace(e, lot=replace(lot, pledged=not lot.pledged)),
        "verified": replace(e, lot=replace(lot, verified=not lot.verified)),
        "zone": replace(e, lot=replace(lot, zone_id=None if lot.zone_id else "SH1-A")),
        "site": replace(e, lot=replace(lot, site_id=lot.site_id + "X")),
        "epc": replace(e, lot=replace(lot, epc=lot.epc + "0")),
        "sku": replace(e, lot=replace(lot, sku_id="ST-COIL" if lot.sku_id != "ST-COIL" else "CU-CATH")),
        "lot_id": replace(e, lot=replace(lot, lot_id=lot.lot_id + "X")),
        "lot facility": replace(e, lot=replace(lot, facility_id="F2")),
        "received_at": replace(
            e, lot=replace(lot, received_at=NOW - timedelta(days=1) if lot.received_at is None else None)
        ),
        "at": replace(e, at=e.at - timedelta(microseconds=1)),
        "kind": replace(e, kind=K.ADJUSTMENT if e.kind != K.ADJUSTMENT else K.PLEDGE),
        "evidence": replace(e, evidence=(*e.evidence, "forged:1")),
        "reason": replace(e, reason=(e.reason or "") + "!"),
        "seq": replace(e, seq=e.seq + 1),
        "facility": replace(e, facility_id="F2"),
        "prev_hash": replace(e, prev_hash="1" * 64),
        "hash": replace(e, hash="2" * 64),
    }


@core
@given(histories(), st.data())
def test_any_edited_entry_breaks_verification_at_that_entry(history, data):
    entries, _ = history
    i = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.sampled_from(sorted(_edits(entries[i]))))
    tampered = list(entries)
    tampered[i] = _edits(entries[i])[field]
    broken = verify_chain("F1", tampered)
    assert broken is not None, field
    assert broken.seq == i + 1, (field, broken)


@core
@given(histories(), st.data())
def test_a_deleted_or_moved_entry_breaks_verification(history, data):
    entries, _ = history
    i = data.draw(st.integers(0, len(entries) - 2))
    without = entries[:i] + entries[i + 1 :]
    assert verify_chain("F1", without) is not None
    swapped = list(entries)
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    assert verify_chain("F1", swapped) is not None
