"""Camera detection and count events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.device import DeviceContext
from gateway.errors import DecodeError
from gateway.formats import camera
from gateway.observation import CameraCount

SAMPLES = Path(__file__).parent / "samples"
NOW = datetime(2024, 3, 1, 10, 0, 5, tzinfo=UTC)
CAM = DeviceContext("cam-bay-2", "wh-sh-01", "bay-2", "camera", "camera", None)
AT = datetime(2024, 3, 1, 2, 0, 0, 500000, tzinfo=UTC)


def decode(value: Any, **options: Any) -> list[Any]:
    return camera.decode(json.dumps(value).encode(), CAM, NOW, **options)


def test_one_count_per_label() -> None:
    counts = camera.decode((SAMPLES / "camera_event.json").read_bytes(), CAM, NOW)
    key = "cam-bay-2:evt-20240301-5512#"
    assert counts == [
        CameraCount(
            "cam-bay-2", AT, key + "coil", "coil", 1, Decimal("0.66"), ("(01)09506000134352(21)COIL0007",)
        ),
        CameraCount("cam-bay-2", AT, key + "forklift", "forklift", 1, Decimal("0.77"), ()),
        # the camera's own count wins; confidence and codes come from the detections above 0.5
        CameraCount(
            "cam-bay-2",
            AT,
            key + "pallet",
            "pallet",
            12,
            Decimal("0.88"),
            ("3034257BF7194E4000001A85", "3034257BF7194E4000001A86"),
        ),
    ]


def test_the_threshold_is_a_parameter() -> None:
    raw = json.loads((SAMPLES / "camera_event.json").read_text())
    del raw["counts"]
    by_label = {c.label: c for c in decode(raw, min_confidence=Decimal("0.4"))}
    assert by_label["pallet"].count == 3
    assert by_label["pallet"].confidence == Decimal("0.41")
    by_label = {c.label: c for c in decode(raw, min_confidence=Decimal("0.9"))}
    assert (by_label["pallet"].count, by_label["forklift"].count) == (1, 0)
    assert by_label["forklift"].confidence is None


def test_counts_alone_and_an_empty_scene() -> None:
    [count] = decode({"ts": "2024-03-01T10:00:00Z", "counts": {"pallet": 0}})
    assert (count.label, count.count, count.confidence, count.epcs) == ("pallet", 0, None, ())
    assert decode({"ts": "2024-03-01T10:00:00Z", "detections": []}) == []


def test_duplicate_codes_are_listed_once() -> None:
    det = {"label": "pallet", "confidence": 0.9, "code": "abcd"}
    [count] = decode({"ts": "2024-03-01T10:00:00Z", "detections": [det, det]})
    assert count.count == 2 and count.epcs == ("ABCD",)


def test_without_event_id_the_key_is_a_digest() -> None:
    value = {"ts": "2024-03-01T10:00:00Z", "counts": {"pallet": 3}}
    [a], [b] = decode(value), decode(value)
    assert a.event_key == b.event_key and a.event_key.endswith("#pallet")
    assert decode({**value, "event_id": 991})[0].event_key == "cam-bay-2:991#pallet"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"counts": {"pallet": 1}}, "missing_field"),
        ({"ts": "2024-03-01T10:00:00Z", "detections": [{"confidence": 0.9}]}, "missing_field"),
        ({"ts": "2024-03-01T10:00:00Z", "detections": [{"label": "pallet"}]}, "missing_field"),
        ({"ts": "2024-03-01T10:00:00Z", "counts": [1]}, "wrong_type"),
        ({"ts": "2024-03-01T10:00:00Z", "counts": {"pallet": "12"}}, "wrong_type"),
        ({"ts": "2024-03-01T10:00:00Z", "detections": {"label": "pallet"}}, "wrong_type"),
        ({"ts": "2024-03-01T10:00:00Z", "detections": [{"label": 1, "confidence": 0.5}]}, "wrong_type"),
        ({"ts": "2024-03-01T10:00:00Z", "detections": [{"label": "p", "confidence": "high"}]}, "wrong_type"),
        ({"ts": "2024-03-01T10:00:00Z", "event_id": ["e"], "counts": {}}, "wrong_type"),
        ({"ts": "2024-03-01T10:00:00Z", "counts": {"pallet": -1}}, "bad_value"),
        ({"ts": "2024-03-01T10:00:00Z", "counts": {"": 1}}, "bad_value"),
        ({"ts": "2024-03-01T10:00:00Z", "detections": [{"label": "p", "confidence": 1.01}]}, "bad_value"),
        (
            {"ts": "2024-03-01T10:00:00Z", "detections": [{"label": "p", "confidence": 0.9, "code": "a b"}]},
            "bad_value",
        ),
        ({"ts": "2024-03-01T10:00:00+24:00", "counts": {}}, "bad_timestamp"),
        ([], "wrong_type"),
    ],
)
def test_bad_events(value: Any, expected: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(value)
    assert caught.value.reason == expected
