"""Zebra IoT Connector tag data events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.device import DeviceContext
from gateway.errors import DecodeError
from gateway.formats import zebra
from gateway.observation import Observation, TagRead

SAMPLES = Path(__file__).parent / "samples"
NOW = datetime(2024, 3, 1, 10, 0, 5, tzinfo=UTC)
READER = DeviceContext(
    "fx9600-dock-1", "wh-sh-01", "dock-1", "rfid_gate", "zebra", None, {1: "outside", 2: "inside"}
)
EPC = "3034257BF7194E4000001A85"


def event(**data: Any) -> dict[str, Any]:
    base = {"idHex": EPC.lower(), "antenna": 1, "peakRssi": -61, "reads": 4, "eventNum": 118, "format": "epc"}
    return {"type": "SIMPLE", "timestamp": "2024-03-01T10:00:00.123+0000", "data": {**base, **data}}


def tag_reads(observations: list[Observation]) -> list[TagRead]:
    assert all(isinstance(o, TagRead) for o in observations)
    return [o for o in observations if isinstance(o, TagRead)]


def decode(value: Any) -> list[Any]:
    return zebra.decode(json.dumps(value).encode(), READER, NOW)


def reason(value: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(value)
    return caught.value.reason


def test_objects_run_together_without_separator() -> None:
    reads = tag_reads(zebra.decode((SAMPLES / "zebra_run_together.json").read_bytes(), READER, NOW))
    assert [(r.epc, r.antenna, r.rssi_dbm) for r in reads] == [
        (EPC, 1, Decimal(-61)),
        (EPC, 2, Decimal(-55)),
        ("3034257BF7194E4000001A86", 2, Decimal(-70)),
    ]
    assert reads[0].at == datetime(2024, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert all(r.direction is None for r in reads)


def test_newline_separated_and_arrays() -> None:
    raw = (json.dumps(event()) + "\n" + json.dumps(event(eventNum=119)) + "\n").encode()
    assert len(zebra.decode(raw, READER, NOW)) == 2
    assert len(decode([event(), event(eventNum=119)])) == 2


def test_event_key_is_the_event_number_at_its_time() -> None:
    [read] = decode(event())
    assert read.event_key == "fx9600-dock-1:118@20240301T100000.123000Z"
    # after a reader reboot eventNum restarts: the same number later is a new read
    [later] = decode({**event(), "timestamp": "2024-03-01T11:00:00.000+0000"})
    assert later.event_key != read.event_key


def test_without_event_number_the_key_is_a_digest_of_the_event() -> None:
    value = event()
    del value["data"]["eventNum"]
    [a], [b] = decode(value), decode(value)
    assert a.event_key == b.event_key
    assert len(a.event_key.split(":")[1]) == 64


def test_offsets_with_and_without_colon() -> None:
    [read] = decode({**event(), "timestamp": "2024-03-01T18:00:00.123+08:00"})
    assert read.at == datetime(2024, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)


def test_other_types_are_skipped() -> None:
    assert decode({"type": "heartbeat", "timestamp": "2024-03-01T10:00:00.000+0000", "data": {}}) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"type": "SIMPLE", "data": event()["data"]}, "missing_field"),
        ({**event(), "data": None}, "missing_field"),
        (event(idHex=None), "missing_field"),
        ({"timestamp": "2024-03-01T10:00:00Z"}, "missing_field"),
        ({**event(), "data": "3034"}, "wrong_type"),
        (event(antenna="2"), "wrong_type"),
        (event(peakRssi="-61"), "wrong_type"),
        (event(eventNum=1.5), "wrong_type"),
        ({**event(), "type": 1}, "wrong_type"),
        (event(idHex="xyz"), "bad_value"),
        (event(format="tid"), "bad_value"),
        (event(eventNum=-1), "bad_value"),
        ({**event(), "timestamp": "2024-03-01T10:00:00.123"}, "bad_timestamp"),
        ({**event(), "timestamp": "2024-03-01T10:00:00.123+2500"}, "bad_timestamp"),
    ],
)
def test_bad_events(value: Any, expected: str) -> None:
    assert reason(value) == expected


@pytest.mark.parametrize(
    "raw", [b"", b'{"type":"SIMPLE"}garbage', b'{"type":"SIMPLE"},{"type":"SIMPLE"}', b"{}}"]
)
def test_malformed_streams(raw: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        zebra.decode(raw, READER, NOW)
    assert caught.value.reason == "malformed_json"
