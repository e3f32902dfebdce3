"""The error hierarchy: one root, stable reason codes, facts attached."""

from __future__ import annotations

import re

import pytest

import gateway.errors as errors
from gateway.errors import (
    REASONS,
    DecodeError,
    DeviceFault,
    GatewayError,
    StaleSequence,
    UnknownDevice,
    Untrusted,
)

SPEC_REASONS = {
    "malformed_json",
    "unknown_format",
    "wrong_type",
    "bad_unit",
    "missing_field",
    "bad_signature",
    "missing_signature",
    "device_mismatch",
    "future_timestamp",
    "payload_too_large",
    "bad_topic",
    "stale_sequence",
    "unknown_device",
}


def _decode_error_classes() -> list[type[DecodeError]]:
    return [
        obj
        for name in errors.__all__
        if isinstance(obj := getattr(errors, name), type) and issubclass(obj, DecodeError)
    ]


def test_every_reason_the_brief_names_exists() -> None:
    assert SPEC_REASONS <= REASONS


def test_reasons_are_snake_case() -> None:
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", reason) for reason in REASONS)


def test_each_concrete_class_has_its_own_reason() -> None:
    groups = {DecodeError, Untrusted, DeviceFault}
    reasons = [cls.reason for cls in _decode_error_classes() if cls not in groups]
    assert len(reasons) == len(set(reasons))
    assert set(reasons) <= REASONS


def test_everything_is_rooted_in_gateway_error() -> None:
    assert all(issubclass(cls, GatewayError) for cls in _decode_error_classes())


def test_all_lists_only_existing_names() -> None:
    for name in errors.__all__:
        assert hasattr(errors, name), name


def test_ingest_errors_carry_facts_and_message() -> None:
    error = StaleSequence("seq 5 is not above 7", device_id="gate-01", seq=5, last_seq=7)
    assert error.reason == "stale_sequence"
    assert str(error) == "seq 5 is not above 7"
    assert error.facts == {"device_id": "gate-01", "seq": 5, "last_seq": 7}
    assert isinstance(UnknownDevice("who?"), Untrusted)


def test_reason_can_be_set_per_instance() -> None:
    assert DecodeError("odd", reason="custom_reason").reason == "custom_reason"
    assert DecodeError("plain").reason == "undecodable"


def test_device_fault_needs_a_known_reason() -> None:
    assert DeviceFault("over", reason="scale_overload").reason == "scale_overload"
    with pytest.raises(ValueError, match="unknown device fault"):
        DeviceFault("?", reason="scale_on_fire")
