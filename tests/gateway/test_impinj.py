"""Impinj R700 IoT device interface events."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.device import DeviceContext
from gateway.errors import DecodeError
from gateway.formats import impinj
from gateway.observation import Observation, TagRead

SAMPLES = Path(__file__).parent / "samples"
NOW = datetime(2024, 3, 1, 10, 0, 5, tzinfo=UTC)
READER = DeviceContext(
    "impinj-dock-3", "wh-sh-01", "dock-3", "rfid_gate", "impinj", None, {1: "outside", 2: "inside"}
)
EPC = "3034257BF7194E4000001A85"


def event(**tag: Any) -> dict[str, Any]:
    return {
        "timestamp": "2024-03-01T10:00:00.123456789Z",
        "hostname": "impinj-14-7a-3c",
        "eventType": "tagInventory",
        "tagInventoryEvent": {"epcHex": EPC, "antennaPort": 1, "peakRssiCdbm": -6500, **tag},
    }


def tag_reads(observations: list[Observation]) -> list[TagRead]:
    assert all(isinstance(o, TagRead) for o in observations)
    return [o for o in observations if isinstance(o, TagRead)]


def decode(value: Any) -> list[Any]:
    return impinj.decode(json.dumps(value).encode(), READER, NOW)


def reason(value: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(value)
    return caught.value.reason


def test_a_newline_delimited_stream_from_the_reader() -> None:
    reads = tag_reads(impinj.decode((SAMPLES / "impinj_stream.ndjson").read_bytes(), READER, NOW))
    assert [(r.epc, r.antenna, r.rssi_dbm) for r in reads] == [
        (EPC, 1, Decimal("-65.00")),
        (EPC, 2, Decimal("-58.75")),
        ("E28011606000020D6B3B1A2F", 2, Decimal("-71.20")),  # from base64: no epcHex
    ]
    # nanoseconds are truncated, never rounded up into the next microsecond
    assert reads[0].at == datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert reads[1].at == datetime(2024, 3, 1, 10, 0, 0, 184000, tzinfo=UTC)
    assert all(r.direction is None and r.seq is None for r in reads)
    assert all(r.device_id == "impinj-dock-3" for r in reads)


def test_one_object_and_an_array_are_accepted_too() -> None:
    [read] = decode(event())
    assert read == TagRead("impinj-dock-3", read.at, read.event_key, EPC, 1, Decimal("-65.00"))
    assert len(decode([event(), event(antennaPort=2)])) == 2


def test_rssi_is_converted_from_centi_dbm_exactly() -> None:
    [read] = decode(event(peakRssiCdbm=-5401))
    assert read.rssi_dbm == Decimal("-54.01")


def test_base64_epc_is_used_when_epc_hex_is_absent() -> None:
    tag = event()["tagInventoryEvent"]
    del tag["epcHex"]
    tag["epc"] = base64.b64encode(bytes.fromhex(EPC)).decode()
    [read] = decode({**event(), "tagInventoryEvent": tag})
    assert read.epc == EPC


def test_antenna_and_rssi_are_optional() -> None:
    value = event()
    value["tagInventoryEvent"] = {"epcHex": EPC, "antennaName": "dock-3-outside"}
    [read] = decode(value)
    assert (read.antenna, read.rssi_dbm) == (None, None)


def test_other_event_types_are_skipped() -> None:
    assert (
        decode({"timestamp": "2024-03-01T10:00:00Z", "eventType": "diagnostic", "diagnosticEvent": {}}) == []
    )


def test_a_redelivered_event_has_the_same_key_and_another_event_another_key() -> None:
    [a], [b], [c] = decode(event()), decode(event()), decode(event(peakRssiCdbm=-6400))
    assert a.event_key == b.event_key != c.event_key
    assert a.event_key.startswith("impinj-dock-3:")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"eventType": "tagInventory", "tagInventoryEvent": {"epcHex": EPC}}, "missing_field"),
        ({**event(), "tagInventoryEvent": None}, "missing_field"),
        ({k: v for k, v in event().items() if k != "eventType"}, "missing_field"),
        (event(epcHex=None), "missing_field"),
        ({**event(), "tagInventoryEvent": [EPC]}, "wrong_type"),
        (event(antennaPort="1"), "wrong_type"),
        (event(peakRssiCdbm=-65.5), "wrong_type"),
        (event(epcHex=12), "wrong_type"),
        ([event(), "x"], "wrong_type"),
        ([[event()]], "wrong_type"),
        (event(epcHex="3034-257B"), "bad_value"),
        (event(epcHex=None, epc="not base64!"), "bad_value"),
        (event(antennaPort=-1), "bad_value"),
        ({**event(), "timestamp": "2024-03-01 10:00:00"}, "bad_timestamp"),
        ({**event(), "timestamp": "2024-02-30T10:00:00Z"}, "bad_timestamp"),
    ],
)
def test_bad_events(value: Any, expected: str) -> None:
    assert reason(value) == expected


@pytest.mark.parametrize("raw", [b"", b"\n\n", b'{"eventType": "tagInventory"', b"}{", b"\xc3\x28"])
def test_malformed_streams(raw: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        impinj.decode(raw, READER, NOW)
    assert caught.value.reason == "malformed_json"


def test_one_bad_event_refuses_the_whole_batch() -> None:
    """A batch is one MQTT message: it is committed or dead-lettered as a whole."""
    raw = (json.dumps(event()) + "\n" + json.dumps(event(epcHex="zz"))).encode()
    with pytest.raises(DecodeError):
        impinj.decode(raw, READER, NOW)
