"""What every decoder produces: our own frozen value objects, whatever the device's format.

All observations carry:

* `device_id` - the device that observed (from the topic, never trusted from a vendor payload);
* `at` - when it was observed, a timezone-aware UTC `datetime` (device clock, or the gateway's
  `now` for formats that carry no time);
* `event_key` - the deduplication identity. MQTT QoS 1 redelivers; a redelivered identical
  message yields the same keys, so ingest can drop it. Native: `"{device_id}:{seq}"`. Vendor
  formats: the vendor's event id when there is one, else `"{device_id}:"` + sha256 hex of the
  event's canonical JSON; suffixed `#...` when one event yields several observations.

Quantities are `Decimal`, never `float`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeAlias

__all__ = [
    "CameraCount",
    "Direction",
    "Heartbeat",
    "Observation",
    "QuantityObservation",
    "TagRead",
    "WeightSample",
]

Direction: TypeAlias = Literal["in", "out"]
"""Movement through a gate: "in" = into the warehouse (pledged area), "out" = leaving it."""


def _require_utc(at: datetime) -> None:
    if at.tzinfo is UTC:  # what every decoder returns: no offset to compute
        return
    if at.tzinfo is None or at.utcoffset() != timedelta(0):
        raise ValueError(f"observation time must be timezone-aware UTC, got {at!r}")


@dataclass(frozen=True, slots=True)
class TagRead:
    """One RFID read of one tag.

    `epc` is the tag's EPC as uppercase hex (e.g. "3034257BF7194E4000001A85"), except for
    EPCIS pure-identity URIs (e.g. "urn:epc:id:sgtin:0614141.107346.2017"), kept verbatim.
    `antenna` is the reader's port number (1-based on Impinj and Zebra). `rssi_dbm` is the
    peak received signal strength in dBm. `direction` is set only when the reader (or an
    EPCIS business step) states it; a gate's `Portal` infers it otherwise.
    """

    device_id: str
    at: datetime
    event_key: str
    epc: str
    antenna: int | None = None
    rssi_dbm: Decimal | None = None
    direction: Direction | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        _require_utc(self.at)


@dataclass(frozen=True, slots=True)
class WeightSample:
    """A scale reading in kilograms. `stable` is the scale's own stability (motion) flag;
    only stable samples should be reconciled. The mass may be negative when a tare exceeds
    the load."""

    device_id: str
    at: datetime
    event_key: str
    mass_kg: Decimal
    stable: bool
    seq: int | None = None

    def __post_init__(self) -> None:
        _require_utc(self.at)


@dataclass(frozen=True, slots=True)
class CameraCount:
    """How many objects of one `label` a camera counts (>= 0), the weakest `confidence`
    (0..1) among the detections counted (None if the count came without detections), and
    any tag or barcode codes read from them (`epcs`, hex uppercased, other codes verbatim)."""

    device_id: str
    at: datetime
    event_key: str
    label: str
    count: int
    confidence: Decimal | None = None
    epcs: tuple[str, ...] = ()
    seq: int | None = None

    def __post_init__(self) -> None:
        _require_utc(self.at)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A device says it is alive. `status` is its own word for its state (e.g. "online")."""

    device_id: str
    at: datetime
    event_key: str
    seq: int | None
    status: str

    def __post_init__(self) -> None:
        _require_utc(self.at)


@dataclass(frozen=True, slots=True)
class QuantityObservation:
    """A class-level count or amount from an EPCIS `quantityList` entry: `quantity` of
    `epc_class` (e.g. "urn:epc:class:lgtin:4012345.012345.998877") in unit `uom`
    (a UN/CEFACT code such as "KGM"; None means a count of instances)."""

    device_id: str
    at: datetime
    event_key: str
    epc_class: str
    quantity: Decimal
    uom: str | None = None
    direction: Direction | None = None

    def __post_init__(self) -> None:
        _require_utc(self.at)


Observation: TypeAlias = TagRead | WeightSample | CameraCount | Heartbeat | QuantityObservation
