"""The decoder registry, and the promise every decoder keeps: bad input raises DecodeError,
never anything else (the gateway must not crash on what a device sends)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.formats as formats
from gateway.device import DeviceContext
from gateway.errors import DecodeError
from gateway.formats import FORMATS, MAX_PAYLOAD_BYTES, decode
from gateway.formats.native import encode_event, sign
from gateway.observation import CameraCount, Heartbeat, QuantityObservation, TagRead, WeightSample

SAMPLES = Path(__file__).parent / "samples"
NOW = datetime(2024, 3, 1, 10, 0, 5, tzinfo=UTC)
SECRET = b"fuzz-secret"
DEVICE = DeviceContext("dev-1", "wh-1", "z-1", "rfid_gate", "native", SECRET, {1: "outside", 2: "inside"})
OBSERVATION_TYPES = (TagRead, WeightSample, CameraCount, Heartbeat, QuantityObservation)

SAMPLE_FILES = {
    "impinj": "impinj_stream.ndjson",
    "zebra": "zebra_run_together.json",
    "epcis": "epcis_document.jsonld",
    "camera": "camera_event.json",
    "mtsics": "mtsics_lines.txt",
}


def reason(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(*args, **kwargs)
    return caught.value.reason


def heartbeat(ts: datetime | str) -> bytes:
    return encode_event("dev-1", 1, ts, "heartbeat", {"status": "online"}, SECRET)


# --- the registry --------------------------------------------------------------------------


def test_the_formats_the_gateway_knows() -> None:
    assert set(FORMATS) == {"native", "impinj", "zebra", "epcis", "scale_json", "mtsics", "camera"}


def test_all_names_public_names_and_nothing_else() -> None:
    assert sorted(formats.__all__) == sorted(set(formats.__all__))
    for name in formats.__all__:
        assert hasattr(formats, name), name
    assert {"DeviceContext", "decode", "FORMATS", "MAX_PAYLOAD_BYTES"} <= set(formats.__all__)


@pytest.mark.parametrize(("name", "filename"), sorted(SAMPLE_FILES.items()))
def test_every_sample_decodes_through_the_registry(name: str, filename: str) -> None:
    observations = decode(name, (SAMPLES / filename).read_bytes(), DEVICE, NOW + timedelta(hours=9))
    assert observations and all(isinstance(o, OBSERVATION_TYPES) for o in observations)


def test_an_unknown_format_is_refused() -> None:
    assert reason("sparkplug_b", b"\x08\x01", DEVICE, NOW) == "unknown_format"


def test_size_is_checked_before_anything_else() -> None:
    assert reason("nonexistent", b" " * (MAX_PAYLOAD_BYTES + 1), DEVICE, NOW) == "payload_too_large"
    assert MAX_PAYLOAD_BYTES == 262_144


def test_a_payload_of_exactly_the_limit_is_decoded() -> None:
    raw = heartbeat("2024-03-01T10:00:00Z")
    padded = raw + b" " * (MAX_PAYLOAD_BYTES - len(raw))
    assert len(padded) == MAX_PAYLOAD_BYTES
    assert len(decode("native", padded, DEVICE, NOW)) == 1
    assert reason("native", padded + b" ", DEVICE, NOW) == "payload_too_large"


def test_future_timestamps_beyond_the_skew_are_refused() -> None:
    assert len(decode("native", heartbeat(NOW + timedelta(minutes=5)), DEVICE, NOW)) == 1
    late = heartbeat(NOW + timedelta(minutes=5, microseconds=1))
    assert reason("native", late, DEVICE, NOW) == "future_timestamp"
    assert len(decode("native", late, DEVICE, NOW, max_skew=timedelta(minutes=10))) == 1
    assert (
        reason("native", heartbeat(NOW + timedelta(seconds=2)), DEVICE, NOW, max_skew=timedelta(0))
        == "future_timestamp"
    )


def test_old_timestamps_are_not_the_decoders_business() -> None:
    assert len(decode("native", heartbeat("2001-01-01T00:00:00Z"), DEVICE, NOW)) == 1


def test_future_check_covers_vendor_formats_too() -> None:
    event = {"type": "SIMPLE", "timestamp": "2024-03-01T11:00:00.000+0000", "data": {"idHex": "ABCD"}}
    assert reason("zebra", json.dumps(event).encode(), DEVICE, NOW) == "future_timestamp"


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode("native", heartbeat(NOW), DEVICE, datetime(2024, 3, 1))


# --- never crash ---------------------------------------------------------------------------

ALL_FORMATS = sorted(FORMATS)
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(name: str, raw: bytes) -> None:
    """Through the registry and straight through the decoder: observations or DecodeError."""
    for call in (lambda: decode(name, raw, DEVICE, NOW), lambda: FORMATS[name](raw, DEVICE, NOW)):
        try:
            observations = call()
        except DecodeError as e:
            assert e.reason and isinstance(e.reason, str)
            continue
        assert all(isinstance(o, OBSERVATION_TYPES) for o in observations)
        assert all(o.device_id == "dev-1" and o.at.utcoffset() == timedelta(0) for o in observations)


@pytest.mark.parametrize("name", ALL_FORMATS)
@fuzz
@given(raw=st.binary(max_size=300))
def test_random_bytes_never_crash_a_decoder(name: str, raw: bytes) -> None:
    decodes_or_refuses(name, raw)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(max_size=30),
    st.sampled_from(
        ["2024-03-01T10:00:00Z", "tagInventory", "SIMPLE", "ObjectEvent", "kg", "ABCD", "S S 1 kg"]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


@pytest.mark.parametrize("name", ALL_FORMATS)
@fuzz
@given(value=json_values)
def test_random_json_never_crashes_a_decoder(name: str, value: Any) -> None:
    decodes_or_refuses(name, json.dumps(value).encode())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(item, rest, new) if i == head else item for i, item in enumerate(value)]


def _delete(value: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        return _replace(value, (head,), _delete(value[head], rest))
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != head}
    return [item for i, item in enumerate(value) if i != head]


def _json_samples() -> dict[str, Any]:
    native_payload = {
        "device_id": "dev-1",
        "seq": 9,
        "ts": "2024-03-01T10:00:00Z",
        "type": "camera.count",
        "body": {"label": "pallet", "count": 3, "confidence": 0.9, "epcs": ["ABCD"]},
    }
    return {
        "native": native_payload,
        "impinj": [json.loads(line) for line in (SAMPLES / "impinj_stream.ndjson").read_text().splitlines()],
        "zebra": [
            {
                "type": "SIMPLE",
                "timestamp": "2024-03-01T10:00:00.123+0000",
                "data": {"idHex": "ABCD", "antenna": 1, "peakRssi": -60, "eventNum": 1, "format": "epc"},
            }
        ],
        "epcis": json.loads((SAMPLES / "epcis_document.jsonld").read_text()),
        "camera": json.loads((SAMPLES / "camera_event.json").read_text()),
        "scale_json": {
            "weight": "5.5",
            "unit": "kg",
            "stable": True,
            "net": 5,
            "ts": "2024-03-01T10:00:00Z",
            "seq": 1,
        },
    }


JSON_SAMPLES = _json_samples()


@pytest.mark.parametrize("name", sorted(JSON_SAMPLES))
@fuzz
@given(data=st.data())
def test_mutated_real_payloads_never_crash_a_decoder(name: str, data: st.DataObject) -> None:
    """Valid payloads with one field replaced or deleted: deep paths the random ones miss.
    Native payloads are re-signed so the mutation reaches the schema checks."""
    value = JSON_SAMPLES[name]
    path = data.draw(st.sampled_from(_paths(value)))
    if path and data.draw(st.booleans()):
        value = _delete(value, path)
    else:
        value = _replace(value, path, data.draw(json_values))
    if name == "native" and isinstance(value, dict):
        with contextlib.suppress(ValueError, TypeError):  # a device could not have signed it either
            value = sign(value, SECRET)
    decodes_or_refuses(name, json.dumps(value).encode())


@given(text=st.text(alphabet="SDIE+-. 0123456789kgtlb\r\n", max_size=40))
@fuzz
def test_mtsics_like_text_never_crashes(text: str) -> None:
    decodes_or_refuses("mtsics", text.encode())


def test_mass_arithmetic_stays_decimal() -> None:
    raw = json.dumps({"weight": "0.1", "unit": "lb"}).encode()
    [sample] = decode("scale_json", raw, DEVICE, NOW)
    assert isinstance(sample, WeightSample)
    assert isinstance(sample.mass_kg, Decimal) and sample.mass_kg == Decimal("0.045359237")


def test_a_now_in_another_zone_still_gives_utc_observations() -> None:
    shanghai = NOW.astimezone(timezone(timedelta(hours=8)))
    [sample] = decode("mtsics", b"S S 5 kg", DEVICE, shanghai)
    assert sample.at == NOW and sample.at.utcoffset() == timedelta(0)


PURE_MODULES = [
    "gateway.errors",
    "gateway.observation",
    "gateway.device",
    "gateway.topics",
    "gateway.portal",
    "gateway.formats",
]


def test_the_decoding_layer_imports_no_adapters() -> None:
    """Decoders, topics and the portal are pure: importing them pulls in no MQTT, asyncio,
    storage or web code (checked in a fresh interpreter)."""
    code = (
        f"import sys; import {', '.join(PURE_MODULES)}; "
        "bad = [m for m in ('paho', 'amqtt', 'asyncio', 'sqlalchemy', 'fastapi', 'ledger', 'api') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_decoding_layer_never_reads_the_clock() -> None:
    root = Path(__file__).parents[2] / "gateway"
    sources = [root / "errors.py", root / "observation.py", root / "device.py", root / "topics.py"]
    sources += [root / "portal.py", *sorted((root / "formats").glob("*.py"))]
    clock = re.compile(r"\b(datetime\.now|datetime\.utcnow|date\.today|time\.time|time\.monotonic|open)\(")
    offenders = [str(p) for p in sources if clock.search(p.read_text())]
    assert offenders == []


def test_json_nesting_is_refused_one_level_past_the_limit_and_lone_surrogates_anywhere() -> None:
    """The walk of parsed values is skipped when the text cannot fail it; the limits hold."""
    from gateway.formats import _fields

    depth = _fields.MAX_DEPTH
    nested: Any = []
    for _ in range(depth - 1):
        nested = [nested]
    assert _fields.load_json(b"[" * depth + b"]" * depth) == nested
    with pytest.raises(DecodeError) as caught:
        _fields.load_json(b"[" * (depth + 1) + b"]" * (depth + 1))
    assert caught.value.reason == "malformed_json"
    with pytest.raises(DecodeError):
        _fields.load_json(b'{"a": [{"b": "x\\udc00"}]}')
    assert _fields.load_json(b'{"a": "\\u00e9"}') == {"a": "\u00e9"}
