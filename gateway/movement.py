"""From a closed gate passage to a ledger movement: pure rules, no IO.

The lot's current state is read by the caller in the same transaction that applies the result,
so the rule sees exactly what the ledger will check.

    direction  lot state                                outcome                  movement
    any        no lot has that EPC                      unknown_tag              none
    unknown    any                                      no_direction             none
    in         expected                                 receipt                  RECEIPT, verified,
                                                                                 at the gate's zone
    in         anything else                            evidence_only            none
    out        release_authorised                       authorised_release       AUTHORISED_RELEASE
    out        in_stock, pledged, quarantined, missing  removal_without_release  REMOVAL_WITHOUT_RELEASE
    out        expected, released, removed              evidence_only            none

A removal without release is a fact, recorded in the journal; alerting acts on it later.
Unknown tags are recorded as passages and never become collateral.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.portal import Passage
from ledger.core.lot import Lot, LotStatus, Movement, MovementKind

__all__ = ["OUTCOMES", "Verdict", "passage_id", "verdict"]

OUTCOMES = (
    "receipt",
    "authorised_release",
    "removal_without_release",
    "evidence_only",
    "no_direction",
    "unknown_tag",
    "ledger_rejected",
)

_REMOVABLE = frozenset(
    {LotStatus.IN_STOCK, LotStatus.PLEDGED, LotStatus.QUARANTINED, LotStatus.MISSING}
)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str
    movement: Movement | None = None


def passage_id(p: Passage) -> str:
    """Deterministic id: sha256 of device, EPC and the first read's event key. A gateway that
    rebuilds a passage after a crash from the same stored reads gets the same id, so a passage
    can never be applied twice."""
    h = hashlib.sha256()
    for part in (p.device_id, p.epc, p.event_keys[0] if p.event_keys else ""):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.hexdigest()


def verdict(p: Passage, lot: Lot | None, site_id: str, zone_id: str | None) -> Verdict:
    """What passage `p` through a gate at (`site_id`, `zone_id`) means for `lot`."""
    if lot is None:
        return Verdict("unknown_tag")
    if p.direction is None:
        return Verdict("no_direction")
    evidence = tuple(p.event_keys)
    if p.direction == "in":
        if lot.status != LotStatus.EXPECTED:
            return Verdict("evidence_only")
        return Verdict("receipt", Movement(
            MovementKind.RECEIPT, lot.lot_id, p.last_seen, evidence, site_id=site_id,
            zone_id=zone_id, verified=True, reason="inbound gate passage"))
    if lot.status == LotStatus.RELEASE_AUTHORISED:
        return Verdict("authorised_release", Movement(
            MovementKind.AUTHORISED_RELEASE, lot.lot_id, p.last_seen, evidence,
            reason="outbound gate passage with an approved release"))
    if lot.status in _REMOVABLE:
        return Verdict("removal_without_release", Movement(
            MovementKind.REMOVAL_WITHOUT_RELEASE, lot.lot_id, p.last_seen, evidence,
            reason="outbound gate passage without a release"))
    return Verdict("evidence_only")
