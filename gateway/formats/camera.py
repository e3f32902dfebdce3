"""Vision cameras: detection and count events (JSON), one `CameraCount` per label.

    {"camera_id": "cam-07", "ts": "2024-03-01T10:00:00Z", "event_id": "evt-5512",
     "detections": [{"label": "pallet", "confidence": 0.93, "bbox": [12, 40, 200, 180],
                     "code": "3034257BF7194E4000001A85"}],
     "counts": {"pallet": 12}}

Per label (the union of `counts` keys and detection labels, in sorted order):

* count = counts[label] when given (the camera's own counting, e.g. line crossing), else the
  number of detections of that label with confidence >= `min_confidence` (default 0.5);
* confidence = the lowest confidence among those detections (None if there are none);
* epcs = the `code`s of those detections, deduplicated in order (hex uppercased).

`ts` is required; `camera_id` is informational (vendor serials rarely equal our device id),
`bbox` is not used. event_key: "{device_id}:{event_id}#{label}", or the event's sha256 in
place of event_id when it has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.device import DeviceContext
from gateway.errors import InvalidValue
from gateway.formats import _fields as f
from gateway.observation import CameraCount, Observation

__all__ = ["DEFAULT_MIN_CONFIDENCE", "decode"]

DEFAULT_MIN_CONFIDENCE = Decimal("0.5")


@dataclass
class _Label:
    count: int | None = None
    confidences: list[Decimal] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)


def decode(
    raw: bytes,
    device: DeviceContext,
    now: datetime,
    *,
    min_confidence: Decimal = DEFAULT_MIN_CONFIDENCE,
) -> list[Observation]:
    """A camera event -> one CameraCount per label. `now` is unused (events carry `ts`)."""
    event = f.as_object(f.load_json(raw), "")
    at = f.parse_timestamp(f.require(event, "ts", ""), "ts")
    labels: dict[str, _Label] = {}
    _read_counts(event, labels)
    _read_detections(event, labels, min_confidence)
    event_id = event.get("event_id")
    base = f.digest(event) if event_id is None else _event_id(event_id)
    return [
        CameraCount(
            device_id=device.device_id,
            at=at,
            event_key=f"{device.device_id}:{base}#{name}",
            label=name,
            count=len(label.confidences) if label.count is None else label.count,
            confidence=min(label.confidences, default=None),
            epcs=tuple(dict.fromkeys(label.codes)),
        )
        for name, label in sorted(labels.items())
    ]


def _event_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(f.as_int(value, "event_id"))
    return f.as_str(value, "event_id")


def _read_counts(event: dict[str, Any], labels: dict[str, _Label]) -> None:
    counts = event.get("counts")
    if counts is None:
        return
    for name, value in f.as_object(counts, "counts").items():
        label = f.as_str(name, "counts key", max_len=128)
        count = f.as_int(value, f"counts.{label}", minimum=0, maximum=2**31 - 1)
        labels.setdefault(label, _Label()).count = count


def _read_detections(event: dict[str, Any], labels: dict[str, _Label], min_confidence: Decimal) -> None:
    detections = event.get("detections")
    if detections is None:
        return
    for i, value in enumerate(f.as_list(detections, "detections")):
        path = f"detections[{i}]"
        detection = f.as_object(value, path)
        name = f.as_str(f.require(detection, "label", path), f"{path}.label", max_len=128)
        confidence = f.as_number(f.require(detection, "confidence", path), f"{path}.confidence")
        if not Decimal(0) <= confidence <= Decimal(1):
            raise InvalidValue(f"{path}.confidence must be within 0..1", field=f"{path}.confidence")
        label = labels.setdefault(name, _Label())
        if confidence < min_confidence:
            continue
        label.confidences.append(confidence)
        code = detection.get("code")
        if code is not None:
            label.codes.append(f.tag_code(code, f"{path}.code"))
