"""The gateway's errors: one rooted hierarchy, a stable reason code on every refusal.

    GatewayError
    ├── DecodeError                   a topic or payload we refuse; `reason` counts dead letters
    │   ├── BadTopic                  bad_topic           not pledge/v1/{site}/{device}/{channel}
    │   ├── PayloadTooLarge           payload_too_large   more than 262144 bytes
    │   ├── UnknownFormat             unknown_format      no decoder of that name
    │   ├── MalformedPayload          malformed_payload   not UTF-8, or a text line we cannot parse
    │   │   └── MalformedJson         malformed_json      not JSON (or NaN, duplicate keys, too deep)
    │   ├── MissingField              missing_field       a required field is absent
    │   ├── WrongType                 wrong_type          a field has the wrong JSON type
    │   ├── UnknownEventType          unknown_event_type  native `type` we do not know
    │   ├── InvalidValue              bad_value           right type, impossible value
    │   │   ├── BadUnit               bad_unit            a mass unit we cannot convert to kg
    │   │   └── BadTimestamp          bad_timestamp       not RFC 3339 with an offset
    │   │       └── FutureTimestamp   future_timestamp    further ahead of `now` than the skew
    │   ├── Untrusted                 (group)             we cannot trust who sent it
    │   │   ├── MissingSignature      missing_signature   native payload without `sig`
    │   │   ├── BadSignature          bad_signature       HMAC does not verify
    │   │   ├── MissingSecret         missing_secret      no secret configured for a native device
    │   │   ├── DeviceMismatch        device_mismatch     payload device_id is not the topic's device
    │   │   └── UnknownDevice         unknown_device      topic names a device we do not know (ingest)
    │   ├── StaleSequence             stale_sequence      seq not above the last committed (ingest)
    │   └── DeviceFault               scale_overload | scale_underload | scale_not_executable
    │                                 | scale_command_error   the device reported its own error
    ├── MqttError (gateway/mqtt.py)   the broker edge: MqttConfigError, MqttConnectError,
    │                                 MqttSubscribeError, MqttPublishError
    ├── RegistryError (registry.py)   InvalidDevice, DeviceExists, DeviceNotFound
    └── StoreUnavailable (ingest.py)  not even a dead letter could be written; nothing is acked

Every error carries a human `message` and its facts as keyword attributes in `facts`
(device id, field path, the offending value, ...). Callers count dead letters by `reason`,
never by class name or message text, so the reason codes are part of the public contract:
`REASONS` lists them all (handy to pre-create metric label values).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEVICE_FAULT_REASONS",
    "REASONS",
    "BadSignature",
    "BadTimestamp",
    "BadTopic",
    "BadUnit",
    "DecodeError",
    "DeviceFault",
    "DeviceMismatch",
    "FutureTimestamp",
    "GatewayError",
    "InvalidValue",
    "MalformedJson",
    "MalformedPayload",
    "MissingField",
    "MissingSecret",
    "MissingSignature",
    "PayloadTooLarge",
    "StaleSequence",
    "UnknownDevice",
    "UnknownEventType",
    "UnknownFormat",
    "Untrusted",
    "WrongType",
]


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message = message
        self.facts = facts

    def __str__(self) -> str:
        return self.message


class DecodeError(GatewayError):
    """A topic or payload the gateway refuses. The message goes to the dead-letter store.

    `reason` is a stable snake_case code. Subclasses fix it as a class attribute; the
    `reason=` keyword overrides it per instance (used by `DeviceFault`).
    """

    reason: str = "undecodable"

    def __init__(self, message: str, *, reason: str | None = None, **facts: Any) -> None:
        super().__init__(message, **facts)
        if reason is not None:
            self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class BadTopic(DecodeError):
    reason = "bad_topic"


class PayloadTooLarge(DecodeError):
    reason = "payload_too_large"


class UnknownFormat(DecodeError):
    reason = "unknown_format"


class MalformedPayload(DecodeError):
    reason = "malformed_payload"


class MalformedJson(MalformedPayload):
    reason = "malformed_json"


class MissingField(DecodeError):
    reason = "missing_field"


class WrongType(DecodeError):
    reason = "wrong_type"


class UnknownEventType(DecodeError):
    reason = "unknown_event_type"


class InvalidValue(DecodeError):
    reason = "bad_value"


class BadUnit(InvalidValue):
    reason = "bad_unit"


class BadTimestamp(InvalidValue):
    reason = "bad_timestamp"


class FutureTimestamp(BadTimestamp):
    reason = "future_timestamp"


class Untrusted(DecodeError):
    """The sender cannot be trusted: worth an alert, not just a counter."""

    reason = "untrusted"


class MissingSignature(Untrusted):
    reason = "missing_signature"


class BadSignature(Untrusted):
    reason = "bad_signature"


class MissingSecret(Untrusted):
    reason = "missing_secret"


class DeviceMismatch(Untrusted):
    reason = "device_mismatch"


class UnknownDevice(Untrusted):
    reason = "unknown_device"


class StaleSequence(DecodeError):
    """A native `seq` at or below the last one committed for the device (a replay or an old
    redelivery). Raised by ingest, which owns the per-device high-water mark."""

    reason = "stale_sequence"


DEVICE_FAULT_REASONS = frozenset(
    {"scale_overload", "scale_underload", "scale_not_executable", "scale_command_error"}
)


class DeviceFault(DecodeError):
    """The device reported an error of its own instead of a measurement."""

    reason = "device_fault"

    def __init__(self, message: str, *, reason: str, **facts: Any) -> None:
        if reason not in DEVICE_FAULT_REASONS:
            raise ValueError(f"unknown device fault reason {reason!r}")
        super().__init__(message, reason=reason, **facts)


def _fixed_reasons() -> frozenset[str]:
    found: set[str] = set()
    stack: list[type[DecodeError]] = [DecodeError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls not in (DecodeError, Untrusted, DeviceFault):
            found.add(cls.reason)
    return frozenset(found)


REASONS: frozenset[str] = _fixed_reasons() | DEVICE_FAULT_REASONS
"""Every reason code a `DecodeError` raised by the gateway can carry."""
