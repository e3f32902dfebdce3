"""Scales: JSON readings and Mettler-Toledo MT-SICS lines, always in kilograms."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.device import DeviceContext
from gateway.errors import DecodeError
from gateway.formats import scale
from gateway.observation import Observation, WeightSample

SAMPLES = Path(__file__).parent / "samples"
NOW = datetime(2024, 3, 1, 10, 0, 5, tzinfo=UTC)
FLOOR = DeviceContext("scale-07", "wh-sh-01", "bay-2", "scale", "scale_json", None)


def weights(observations: list[Observation]) -> list[WeightSample]:
    assert all(isinstance(o, WeightSample) for o in observations)
    return [o for o in observations if isinstance(o, WeightSample)]


def decode_json(value: Any, now: datetime = NOW) -> list[Any]:
    return scale.decode_json(json.dumps(value).encode(), FLOOR, now)


def reason(call: Any, *args: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        call(*args)
    return caught.value.reason


# --- scale_json ----------------------------------------------------------------------------


def test_net_is_preferred_and_strings_keep_their_digits() -> None:
    value = {
        "weight": 1300.5,
        "unit": "kg",
        "stable": True,
        "gross": "1300.50",
        "tare": "50.00",
        "net": "1250.50",
        "ts": "2024-03-01T10:00:00Z",
        "seq": 77,
    }
    [sample] = decode_json(value)
    assert sample == WeightSample(
        "scale-07", datetime(2024, 3, 1, 10, tzinfo=UTC), "scale-07:77", Decimal("1250.50"), True, 77
    )


def test_weight_then_gross_when_net_is_absent() -> None:
    assert decode_json({"weight": 12.5, "gross": 13, "unit": "kg"})[0].mass_kg == Decimal("12.5")
    assert decode_json({"gross": 13, "unit": "kg"})[0].mass_kg == Decimal(13)


@pytest.mark.parametrize(
    ("weight", "unit", "kg"),
    [
        ("1500", "g", Decimal("1.5")),
        (2, "t", Decimal(2000)),
        ("100", "lb", Decimal("45.359237")),
        ("100.00", "KG", Decimal("100")),
        (0.1, "kg", Decimal("0.1")),  # the JSON text's digits, never the float's
    ],
)
def test_units_convert_exactly_to_kg(weight: Any, unit: str, kg: Decimal) -> None:
    [sample] = decode_json({"weight": weight, "unit": unit, "stable": True})
    assert sample.mass_kg == kg
    assert str(sample.mass_kg) != "0.1000000000000000055511151231257827"


def test_without_ts_the_time_is_now_and_without_stable_it_is_not_stable() -> None:
    [sample] = decode_json({"weight": 5, "unit": "kg"})
    assert sample.at == NOW
    assert sample.stable is False


def test_event_keys() -> None:
    with_ts = {"weight": 5, "unit": "kg", "ts": "2024-03-01T10:00:00Z"}
    assert decode_json(with_ts)[0].event_key == decode_json(with_ts, NOW + timedelta(seconds=9))[0].event_key
    # no time, no seq: an unchanged reading later is a new sample, not a redelivery
    no_ts = {"weight": 5, "unit": "kg"}
    assert decode_json(no_ts)[0].event_key != decode_json(no_ts, NOW + timedelta(seconds=10))[0].event_key
    assert decode_json({**no_ts, "seq": 3})[0].event_key == "scale-07:3"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"unit": "kg", "tare": 5}, "missing_field"),
        ({"weight": 5}, "missing_field"),
        ({"weight": 5, "unit": "stone"}, "bad_unit"),
        ({"weight": 5, "unit": ""}, "bad_value"),
        ({"weight": 5, "unit": 1}, "wrong_type"),
        ({"weight": "five", "unit": "kg"}, "bad_value"),
        ({"weight": "NaN", "unit": "kg"}, "bad_value"),
        ({"weight": "1e99", "unit": "kg"}, "bad_value"),
        ({"weight": True, "unit": "kg"}, "wrong_type"),
        ({"weight": [5], "unit": "kg"}, "wrong_type"),
        ({"weight": 5, "unit": "kg", "stable": "yes"}, "wrong_type"),
        ({"weight": 5, "unit": "kg", "seq": "7"}, "wrong_type"),
        ({"weight": 5, "unit": "kg", "seq": -7}, "bad_value"),
        ({"weight": 5, "unit": "kg", "ts": "10:00"}, "bad_timestamp"),
        ([{"weight": 5, "unit": "kg"}], "wrong_type"),
    ],
)
def test_bad_json_readings(value: Any, expected: str) -> None:
    assert reason(decode_json, value) == expected


def test_malformed_json_reading() -> None:
    assert reason(scale.decode_json, b"weight=5kg", FLOOR, NOW) == "malformed_json"


# --- MT-SICS -------------------------------------------------------------------------------


def test_mtsics_lines() -> None:
    samples = weights(scale.decode_mtsics((SAMPLES / "mtsics_lines.txt").read_bytes(), FLOOR, NOW))
    assert [(s.mass_kg, s.stable, s.at) for s in samples] == [
        (Decimal("100.00"), True, NOW),
        (Decimal("99.80"), False, NOW),
        (Decimal("2.205") * Decimal("0.45359237"), True, NOW),
    ]
    keys = [s.event_key for s in samples]
    assert len(set(keys)) == 3 and all(k.startswith("scale-07:") for k in keys)


@pytest.mark.parametrize(
    ("line", "kg", "stable"),
    [
        (b"S S      100.00 kg", Decimal("100.00"), True),
        (b"SI S   -0.50 kg\n", Decimal("-0.50"), True),
        (b"S D 1500 g", Decimal("1.5"), False),
        (b"S S 1.25 t\r\n", Decimal("1250"), True),
    ],
)
def test_mtsics_weight_responses(line: bytes, kg: Decimal, stable: bool) -> None:
    [sample] = weights(scale.decode_mtsics(line, FLOOR, NOW))
    assert (sample.mass_kg, sample.stable) == (kg, stable)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"S I", "scale_not_executable"),
        (b"S +\r\n", "scale_overload"),
        (b"S   -", "scale_underload"),
        (b"SI +", "scale_overload"),
        (b"ES", "scale_command_error"),
        (b"ET\r\n", "scale_command_error"),
        (b"EL", "scale_command_error"),
        (b"S S 100.00 kg\r\nS +\r\n", "scale_overload"),  # an error refuses the whole payload
        (b"S S 100.00 stone", "bad_unit"),
        (b"", "malformed_payload"),
        (b"\r\n\r\n", "malformed_payload"),
        (b"S S", "malformed_payload"),
        (b"S X 100.00 kg", "malformed_payload"),
        (b"S S 1,5 kg", "malformed_payload"),
        (b"hello", "malformed_payload"),
        (b"S S 100.00 kg \xb0", "malformed_payload"),
    ],
)
def test_mtsics_errors(raw: bytes, expected: str) -> None:
    assert reason(scale.decode_mtsics, raw, FLOOR, NOW) == expected


def test_decode_sniffs_the_format() -> None:
    assert weights(scale.decode(b' {"weight": 5, "unit": "kg"}', FLOOR, NOW))[0].mass_kg == Decimal(5)
    assert weights(scale.decode(b"S S 5 kg", FLOOR, NOW))[0].mass_kg == Decimal(5)
