"""The movement journal: append-only entries, hash-chained per facility.

Each entry records one movement and the lot's state after it. Its hash is
sha256(previous hash || canonical bytes of the entry), the first entry of a facility chaining to
GENESIS. Editing, deleting or reordering any stored entry changes a hash downstream, which
`verify_chain` reports as the first broken entry. Replaying a facility's entries rebuilds every
lot's state (`replay`): the journal, not the lot table, is the source of truth.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from ledger.core.lot import Lot, LotStatus, MovementKind

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal line. `seq` counts from 1 per facility; `at` is the effective time (UTC)."""

    facility_id: str
    seq: int
    at: datetime
    kind: MovementKind
    lot: Lot
    evidence: tuple[str, ...]
    reason: str | None
    prev_hash: str
    hash: str


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(
    facility_id: str,
    seq: int,
    at: datetime,
    kind: MovementKind,
    lot: Lot,
    evidence: tuple[str, ...],
    reason: str | None,
) -> bytes:
    """The exact bytes an entry's hash covers: sorted-key compact JSON, Decimals as strings."""
    doc = {
        "facility_id": facility_id,
        "seq": seq,
        "at": _ts(at),
        "kind": str(kind),
        "lot_id": lot.lot_id,
        "epc": lot.epc,
        "sku_id": lot.sku_id,
        "quantity": str(lot.quantity.normalize()),
        "site_id": lot.site_id,
        "zone_id": lot.zone_id,
        "status": str(lot.status),
        "pledged": lot.pledged,
        "verified": lot.verified,
        "received_at": _ts(lot.received_at),
        "evidence": list(evidence),
        "reason": reason,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + payload).hexdigest()


def make_entry(
    prev_hash: str,
    seq: int,
    at: datetime,
    kind: MovementKind,
    lot: Lot,
    evidence: tuple[str, ...] = (),
    reason: str | None = None,
) -> JournalEntry:
    """Build the next entry of `lot.facility_id`'s chain after an entry hashed `prev_hash`."""
    payload = canonical_bytes(lot.facility_id, seq, at, kind, lot, evidence, reason)
    return JournalEntry(
        lot.facility_id, seq, at, kind, lot, evidence, reason, prev_hash, chain_hash(prev_hash, payload)
    )


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first entry that does not verify, and why."""

    facility_id: str
    seq: int
    reason: str


def verify_chain(facility_id: str, entries: Iterable[JournalEntry]) -> ChainBreak | None:
    """Check seq continuity, prev-hash links and every hash; None means the chain is intact."""
    verifier = ChainVerifier(facility_id)
    for e in entries:
        broken = verifier.check(e)
        if broken is not None:
            return broken
    return None


class ChainVerifier:
    """`verify_chain` one entry at a time, holding only the last link: a journal of any length
    is checked as it is read, in bounded memory. `last` is (seq, hash) of the last good entry."""

    def __init__(self, facility_id: str) -> None:
        self.facility_id = facility_id
        self.last: tuple[int, str] = (0, GENESIS)

    def check(self, e: JournalEntry) -> ChainBreak | None:
        """None if `e` follows the entries checked so far; else where and why the chain breaks."""
        facility_id, (seq, prev) = self.facility_id, self.last
        if e.seq != seq + 1:
            return ChainBreak(facility_id, seq + 1, f"entry {seq + 1} is missing (found {e.seq})")
        if e.prev_hash != prev:
            return ChainBreak(facility_id, e.seq, "previous-hash link does not match the entry before")
        payload = canonical_bytes(e.facility_id, e.seq, e.at, e.kind, e.lot, e.evidence, e.reason)
        # The hash covers the entry's facility id, not lot.facility_id: check that they agree.
        wrong_facility = e.facility_id != facility_id or e.lot.facility_id != facility_id
        if wrong_facility or chain_hash(prev, payload) != e.hash:
            return ChainBreak(facility_id, e.seq, "content does not match its hash (edited)")
        self.last = (e.seq, e.hash)
        return None


def replay(entries: Iterable[JournalEntry], as_of: datetime | None = None) -> dict[str, Lot]:
    """Lot states after applying every entry with `at <= as_of` (all entries if None)."""
    lots: dict[str, Lot] = {}
    for e in entries:
        if as_of is not None and e.at > as_of:
            continue
        lots[e.lot.lot_id] = e.lot
    return lots


def quantity_by_status(lots: Iterable[Lot]) -> dict[LotStatus, Decimal]:
    """Sum of quantities per status (a quick position view)."""
    out: dict[LotStatus, Decimal] = {}
    for lot in lots:
        out[lot.status] = out.get(lot.status, Decimal(0)) + lot.quantity
    return out
