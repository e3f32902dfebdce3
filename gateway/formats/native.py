"""Our own device protocol: one signed JSON envelope per message (docs/device-protocol.md).

    {"device_id": "gate-01", "seq": 42, "ts": "2024-03-01T10:00:00.120Z",
     "type": "rfid.read", "body": {...}, "sig": "<64 lowercase hex>"}

`sig` is HMAC-SHA256, keyed with the device's secret, over `canonical_bytes(payload)`.
Simulators and firmware stubs build messages with `encode_event`, so the gateway and its
test devices share one implementation of the canonical form.

Checking that `seq` increases is ingest's job (it owns the per-device high-water mark);
this module only checks that it is an integer in [0, 2**63 - 1].
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from gateway.device import DeviceContext
from gateway.errors import (
    BadSignature,
    DecodeError,
    DeviceMismatch,
    InvalidValue,
    MissingField,
    MissingSecret,
    MissingSignature,
    UnknownEventType,
    WrongType,
)
from gateway.formats import _fields as f
from gateway.observation import CameraCount, Heartbeat, Observation, TagRead, WeightSample

__all__ = [
    "MESSAGE_TYPES",
    "canonical_bytes",
    "decode",
    "encode_event",
    "sign",
    "signature",
]

MESSAGE_TYPES = ("rfid.read", "weight.sample", "camera.count", "heartbeat")

_MAX_CANONICAL_EXPONENT = 400
"""Every finite IEEE double fits (5e-324 .. 1.8e308); the bound keeps a hostile payload of
"1e999999" numbers from expanding into gigabytes of plain digits."""

# --- canonical form -------------------------------------------------------------------------


def _number_text(value: int | float | Decimal) -> str:
    """A number's canonical text: plain decimal notation of its value, no exponent, no
    trailing fractional zeros, no "-0" (1.50 -> "1.5", 1e2 -> "100", -0.0 -> "0").
    Integers print as they are. A float is taken at its shortest repr, as Python's json
    module writes it, so a device signing floats and the gateway parsing Decimals agree."""
    if isinstance(value, int):
        return str(value)
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    sign, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0"
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    if abs(exponent) > _MAX_CANONICAL_EXPONENT:
        raise ValueError(f"{value!r} is out of the canonical number range (beyond a double)")
    if exponent >= 0:
        text = stripped + "0" * exponent
    elif len(stripped) > -exponent:
        text = f"{stripped[:exponent]}.{stripped[exponent:]}"
    else:
        text = "0." + "0" * (-exponent - len(stripped)) + stripped
    return "-" + text if sign else text


def _encode(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool | str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int | float | Decimal):
        out.append(_number_text(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {key!r}")
            out.append("," if i else "")
            out.append(json.dumps(key, ensure_ascii=False) + ":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            out.append("," if i else "")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} in a native payload")


def canonical_bytes(payload: Mapping[str, Any]) -> bytes:
    """The bytes a native signature covers: `payload` without its "sig" member, as
    `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` in UTF-8 -
    with every number written as `_number_text` (plain decimal of its value), so that a
    float-based signer and our Decimal-based parser produce identical bytes.

    Raises ValueError for non-finite or absurdly large numbers, TypeError for values JSON
    cannot carry.
    """
    out: list[str] = []
    _encode({k: v for k, v in payload.items() if k != "sig"}, out)
    return "".join(out).encode("utf-8")


def signature(payload: Mapping[str, Any], secret: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `canonical_bytes(payload)` under `secret`."""
    return hmac.new(secret, canonical_bytes(payload), hashlib.sha256).hexdigest()


def sign(payload: Mapping[str, Any], secret: bytes) -> dict[str, Any]:
    """A copy of `payload` with "sig" set (any previous "sig" replaced)."""
    return {**payload, "sig": signature(payload, secret)}


def encode_event(
    device_id: str,
    seq: int,
    ts: datetime | str,
    type: str,  # shadows the builtin on purpose: the envelope's field name
    body: Mapping[str, Any],
    secret: bytes,
) -> bytes:
    """A complete signed native message, ready to publish. `ts` may be an aware datetime
    (written as RFC 3339 UTC with a "Z") or an RFC 3339 string used as is. The message is
    written in canonical form itself (compact, sorted keys)."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        ts = ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    payload = {"device_id": device_id, "seq": seq, "ts": ts, "type": type, "body": dict(body)}
    out: list[str] = []
    _encode(sign(payload, secret), out)
    return "".join(out).encode("utf-8")


# --- schema ---------------------------------------------------------------------------------


def _json_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise PydanticCustomError("decimal_type", "must be a JSON number")
    try:
        return f.as_number(value, "value")
    except DecodeError as e:
        raise PydanticCustomError("number_range", "must be a finite number in range") from e


def _number_or_text(value: Any) -> Decimal:
    if not isinstance(value, str):
        return _json_number(value)
    try:
        return f.as_decimal(value, "value")
    except DecodeError as e:
        raise PydanticCustomError("decimal_parsing", "must be a decimal number") from e


JsonNumber = Annotated[Decimal, BeforeValidator(_json_number)]
DecimalOrText = Annotated[Decimal, BeforeValidator(_number_or_text)]
Text = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    # extra="ignore": newer firmware may add fields; they are still covered by the signature.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class _Envelope(_Strict):
    device_id: Text
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]
    ts: Annotated[str, Field(max_length=64)]
    type: Text
    body: dict[str, Any]


class RfidReadBody(_Strict):
    """rfid.read: one tag read. epc hex; antenna port; peak RSSI in dBm."""

    epc: Annotated[str, Field(max_length=128)]
    antenna: Annotated[int, Field(ge=0, le=65535)]
    rssi_dbm: JsonNumber
    direction: Literal["in", "out"] | None = None


class WeightSampleBody(_Strict):
    """weight.sample: mass in kg (number or decimal string), the scale's stable flag."""

    mass_kg: DecimalOrText
    stable: bool


class CameraCountBody(_Strict):
    """camera.count: how many `label` objects, confidence 0..1, optional tag codes."""

    label: Text
    count: Annotated[int, Field(ge=0, le=2**31 - 1)]
    confidence: Annotated[JsonNumber, Field(ge=0, le=1)] | None = None
    epcs: Annotated[list[str], Field(max_length=10_000)] = []


class HeartbeatBody(_Strict):
    """heartbeat: the device's status word and optional uptime in seconds."""

    status: Text
    uptime_s: Annotated[int, Field(ge=0)] | None = None


def _validation_error(exc: ValidationError, where: str) -> DecodeError:
    error = exc.errors(include_url=False, include_input=False)[0]
    path = where
    for part in error["loc"]:
        path = f.join(path, part if isinstance(part, int) else str(part))
    kind = error["type"]
    if kind == "missing":
        return MissingField(f"{path} is required", field=path)
    if kind.endswith("_type"):
        return WrongType(f"{path}: {error['msg']}", field=path)
    return InvalidValue(f"{path}: {error['msg']}", field=path)


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], data: Any, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e, where) from None


# --- decoding -------------------------------------------------------------------------------


def _verify(payload: dict[str, Any], device: DeviceContext) -> None:
    sig = payload.get("sig")
    if sig is None:
        raise MissingSignature("native payload has no sig", device_id=device.device_id)
    if device.secret is None:
        raise MissingSecret(
            f"no secret configured for native device {device.device_id}; cannot verify",
            device_id=device.device_id,
        )
    if not isinstance(sig, str):
        raise BadSignature("sig must be a hex string", device_id=device.device_id)
    try:
        expected = signature(payload, device.secret)
    except (ValueError, TypeError) as e:
        raise InvalidValue(f"payload cannot be put in canonical form: {e}") from e
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8")):
        raise BadSignature("signature does not verify", device_id=device.device_id)


def _check_device(payload: dict[str, Any], device: DeviceContext) -> None:
    claimed = f.require(payload, "device_id", "")
    if not isinstance(claimed, str):
        raise f.wrong_type("device_id", "a string", claimed)
    if claimed != device.device_id:
        raise DeviceMismatch(
            f"payload device_id {claimed[:64]!r} is not the topic's device {device.device_id!r}",
            device_id=device.device_id,
            claimed=claimed[:64],
        )


_SIG_MEMBER = b'"sig":"'
_SIG_HEX_LEN = 64


def _split_signature(raw: bytes) -> tuple[bytes, bytes] | None:
    """(the bytes without the sig member, the sig) when `raw` holds exactly one literal
    `"sig":"<64 chars>"` member with a comma on one side; None otherwise.

    For a message written in canonical form (what `encode_event` and our firmware send), the
    bytes without that member ARE `canonical_bytes(payload)`: the HMAC can be checked over
    them without parsing and re-encoding the payload."""
    start = raw.find(_SIG_MEMBER)
    if start < 0 or raw.find(_SIG_MEMBER, start + 1) >= 0:
        return None
    hex_start = start + len(_SIG_MEMBER)
    end = hex_start + _SIG_HEX_LEN  # the closing quote
    if raw[end : end + 1] != b'"':
        return None
    if raw[start - 1 : start] == b",":
        signed = raw[: start - 1] + raw[end + 1 :]
    elif raw[end + 1 : end + 2] == b",":
        signed = raw[:start] + raw[end + 2 :]
    else:
        return None
    return signed, raw[hex_start:end]


def _signed_bytes(raw: bytes, device: DeviceContext) -> bytes | None:
    """The fast path: the bytes the device signed, when `raw` is in canonical form and its
    HMAC verifies; None to take the general path.

    Safe whatever the rest of `raw` says: the payload is then parsed from exactly the bytes
    the device's secret signed (never from the unsigned remainder), so it is the content the
    device signed. A `raw` that is not canonical (pretty-printed, another key order, floats
    written differently), or whose found member is not the signature, simply fails this HMAC
    and goes the general way, with its errors in the documented order."""
    if device.secret is None:
        return None
    split = _split_signature(raw)
    if split is None:
        return None
    signed, sig = split
    # hmac.digest: OpenSSL's one-shot HMAC, no HMAC object per message.
    expected = hmac.digest(device.secret, signed, "sha256").hex().encode("ascii")
    if not hmac.compare_digest(expected, sig):
        return None
    return signed


def _signed_payload(raw: bytes, device: DeviceContext) -> dict[str, Any] | None:
    """The payload parsed from the signed bytes (`_signed_bytes`), its device checked; None
    to take the general path."""
    signed = _signed_bytes(raw, device)
    return None if signed is None else _parsed(signed, device)


def _parsed(signed: bytes, device: DeviceContext) -> dict[str, Any]:
    payload = f.as_object(f.load_json(signed), "")
    _check_device(payload, device)
    return payload


# The signed bytes of a canonical rfid.read (what zone readers and gates send all day), as
# `encode_event` writes them. A text this pattern matches is a JSON object whose keys are
# exactly these (sorted, so none twice), whose strings hold no escape or control character,
# and whose numbers are plain JSON integers or decimals: what `load_json` would return is
# known from the groups alone. Anything else (another key order, a key more, an escape, an
# exponent, a null) takes the general path.
_STRING = r'"([^"\\\x00-\x1f]*)"'
_CANONICAL_READ = re.compile(
    r'\{"body":\{"antenna":(0|[1-9][0-9]{0,4}),(?:"direction":"(in|out)",)?'
    r'"epc":"([0-9A-Fa-f]{2,128})","rssi_dbm":(-?(?:0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?)\},'
    r'"device_id":' + _STRING + r',"seq":(0|[1-9][0-9]{0,18}),'
    r'"ts":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z)",'
    r'"type":"rfid\.read"\}')
_MAX_SEQ = 2**63 - 1


def _canonical_read(signed: bytes, device: DeviceContext) -> TagRead | None:
    """The TagRead of a canonical rfid.read's signed bytes, checked by hand: exactly what the
    general path (JSON, `_check_device`, `_Envelope`, `parse_timestamp`, `RfidReadBody`,
    `epc_hex`) returns for them. None for anything the general path would refuse or might
    treat differently - it then runs and raises its own error (same reason, same order)."""
    try:
        match = _CANONICAL_READ.fullmatch(signed.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    antenna, direction, epc, rssi, fraction, device_id, seq_text, ts = match.groups()
    seq = int(seq_text)
    if (device_id != device.device_id or not 1 <= len(device_id) <= 256 or seq > _MAX_SEQ
            or int(antenna) > 65535 or len(epc) % 2):
        return None
    try:
        # json's own rule: a number with a fraction is parse_float's (Decimal), else an int.
        rssi_dbm = f.as_number(Decimal(rssi) if fraction else int(rssi), "value")
        # The pattern admits only "YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z", which fromisoformat reads
        # as parse_timestamp does (UTC; an invalid date or time raises ValueError).
        at = datetime.fromisoformat(ts)
    except (DecodeError, ValueError):
        return None
    return TagRead(device_id, at, f"{device_id}:{seq}", epc.upper(), int(antenna), rssi_dbm,
                   direction, seq)  # type: ignore[arg-type]  # the pattern: "in", "out" or None


def decode(raw: bytes, device: DeviceContext, now: datetime) -> list[Observation]:
    """One signed native message -> one observation.

    Checks, in order: JSON object; device_id equals the topic's device; sig present, a
    secret configured, HMAC verifies; then the envelope and body schemas. `now` is unused
    (native messages always carry `ts`); it is part of the common decoder signature.

    A message in canonical form verifies first, over its own bytes (`_signed_bytes`); a
    canonical rfid.read is then read by `_canonical_read`, without the JSON parser or the
    schemas. Any other message is parsed and its canonical bytes rebuilt to verify
    (`_verify`).
    """
    signed = _signed_bytes(raw, device)
    if signed is not None:
        read = _canonical_read(signed, device)
        if read is not None:
            return [read]
        payload = _parsed(signed, device)
    else:
        payload = f.as_object(f.load_json(raw), "")
        _check_device(payload, device)
        _verify(payload, device)
    return [_observation(payload, device)]


def _observation(payload: dict[str, Any], device: DeviceContext) -> Observation:
    """The general path's schemas, after the signature: envelope, time, type, body."""
    envelope = _validate(_Envelope, payload, "")
    at = f.parse_timestamp(envelope.ts, "ts")
    build = _BUILDERS.get(envelope.type)
    if build is None:
        raise UnknownEventType(
            f"unknown native type {envelope.type!r}; expected one of {MESSAGE_TYPES}",
            type=envelope.type,
        )
    key = f"{device.device_id}:{envelope.seq}"
    return build(envelope.body, device.device_id, at, key, envelope.seq)


def _rfid_read(body: dict[str, Any], device_id: str, at: datetime, key: str, seq: int) -> TagRead:
    b = _validate(RfidReadBody, body, "body")
    epc = f.epc_hex(b.epc, "body.epc")
    return TagRead(device_id, at, key, epc, b.antenna, b.rssi_dbm, b.direction, seq)


def _weight(body: dict[str, Any], device_id: str, at: datetime, key: str, seq: int) -> WeightSample:
    b = _validate(WeightSampleBody, body, "body")
    return WeightSample(device_id, at, key, b.mass_kg, b.stable, seq)


def _camera(body: dict[str, Any], device_id: str, at: datetime, key: str, seq: int) -> CameraCount:
    b = _validate(CameraCountBody, body, "body")
    epcs = tuple(f.tag_code(code, f"body.epcs[{i}]") for i, code in enumerate(b.epcs))
    return CameraCount(device_id, at, key, b.label, b.count, b.confidence, epcs, seq)


def _heartbeat(body: dict[str, Any], device_id: str, at: datetime, key: str, seq: int) -> Heartbeat:
    b = _validate(HeartbeatBody, body, "body")
    return Heartbeat(device_id, at, key, seq, b.status)


_BUILDERS: dict[str, Callable[[dict[str, Any], str, datetime, str, int], Observation]] = {
    "rfid.read": _rfid_read,
    "weight.sample": _weight,
    "camera.count": _camera,
    "heartbeat": _heartbeat,
}
