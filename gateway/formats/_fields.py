"""Reading typed fields out of untrusted payloads: JSON, numbers, timestamps, EPCs, units.

Every helper raises a `DecodeError` subclass with a stable reason, never anything else:
the decoders are built from these, and the gateway must never crash on bad input.
`path` arguments name the field in messages (e.g. "tagInventoryEvent.antennaPort").
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from gateway.errors import (
    BadTimestamp,
    BadUnit,
    InvalidValue,
    MalformedJson,
    MalformedPayload,
    MissingField,
    WrongType,
)

MAX_DEPTH = 32
"""Deepest JSON nesting accepted. Real payloads nest 5 levels at most."""

MAX_EXPONENT = 40
"""Largest |decimal exponent| of a number used as a field value (keeps Decimal maths sane)."""

MASS_UNITS_KG: Mapping[str, Decimal] = {
    "kg": Decimal(1),
    "g": Decimal("0.001"),
    "t": Decimal(1000),
    "lb": Decimal("0.45359237"),  # the international avoirdupois pound, exact by definition
}
"""Kilograms per unit, by lowercase unit symbol."""

_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){1,64}", re.ASCII)
_TAG_CODE = re.compile(r"[\x21-\x7e]{1,256}", re.ASCII)  # printable ASCII, no spaces
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]{1,12}))?"
    r"(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.ASCII,
)


# --- JSON -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return obj


_DECODER = json.JSONDecoder(
    parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
)


def _text(raw: bytes, error: type[MalformedPayload]) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"payload is not UTF-8: {e.reason} at byte {e.start}") from e
    return text.removeprefix("\ufeff")


def _check_tree(value: Any) -> None:
    """Reject nesting deeper than MAX_DEPTH and strings that cannot be UTF-8 (lone
    surrogates from `\\ud800` escapes) - both would break code further down."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as e:
                raise MalformedJson("JSON string with a lone surrogate escape") from e
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise MalformedJson(f"JSON nested deeper than {MAX_DEPTH} levels")
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)


def load_json(raw: bytes) -> Any:
    """One JSON value from UTF-8 bytes. Fractional numbers become `Decimal` (never float);
    NaN/Infinity, duplicate keys, lone surrogates and deep nesting are refused."""
    values = load_json_stream(raw)
    if len(values) != 1:
        raise MalformedJson(f"expected one JSON value, found {len(values)}")
    return values[0]


def load_json_stream(raw: bytes) -> list[Any]:
    """All JSON values in `raw`: one value, newline-delimited values, or values run
    together with no separator (`}{`), as readers batch them."""
    text = _text(raw, MalformedJson)
    return list(_iter_values(text))


def _needs_tree_check(text: str) -> bool:
    """Whether `_check_tree` can find anything in the values parsed from `text`. A lone
    surrogate can only come from a `\\u` escape (UTF-8 decoding already refused encoded
    ones), and nesting deeper than MAX_DEPTH needs more than MAX_DEPTH brackets. Two C-speed
    scans instead of a walk of every value: most payloads skip the walk."""
    return "\\u" in text or text.count("{") + text.count("[") > MAX_DEPTH


def _iter_values(text: str) -> Iterator[Any]:
    index, end = 0, len(text)
    found = False
    check = _needs_tree_check(text)
    while True:
        while index < end and text[index] in " \t\r\n":
            index += 1
        if index == end:
            break
        try:
            value, index = _DECODER.raw_decode(text, index)
        except (ValueError, RecursionError) as e:
            raise MalformedJson(f"not JSON: {e}") from e
        if check:
            _check_tree(value)
        found = True
        yield value
    if not found:
        raise MalformedJson("empty payload")


def digest(value: Any) -> str:
    """sha256 hex of a JSON value's canonical form: the dedup identity of a vendor event
    that carries no id of its own. Same parsed value, same digest."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_bytes(*parts: bytes) -> str:
    """sha256 hex over length-prefixed parts (so ("ab", "c") and ("a", "bc") differ)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


# --- fields ---------------------------------------------------------------------------------


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def wrong_type(path: str, expected: str, value: Any) -> WrongType:
    return WrongType(f"{path} must be {expected}, got {_kind(value)}", field=path)


def as_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise wrong_type(path or "payload", "an object", value)
    return value


def as_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise wrong_type(path, "an array", value)
    return value


def require(obj: Mapping[str, Any], key: str, path: str) -> Any:
    """The value at `key`; a JSON null counts as absent."""
    value = obj.get(key)
    if value is None:
        raise MissingField(f"{join(path, key)} is required", field=join(path, key))
    return value


def as_str(value: Any, path: str, *, max_len: int = 256) -> str:
    if not isinstance(value, str):
        raise wrong_type(path, "a string", value)
    if not value or len(value) > max_len:
        raise InvalidValue(f"{path} must have 1..{max_len} characters", field=path)
    return value


def as_int(value: Any, path: str, *, minimum: int | None = None, maximum: int = 2**63 - 1) -> int:
    """A JSON integer (not a boolean, not 1.0) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(path, "an integer", value)
    if (minimum is not None and value < minimum) or value > maximum:
        raise InvalidValue(f"{path} = {value} is out of range", field=path)
    return value


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise wrong_type(path, "a boolean", value)
    return value


def _bounded(value: Decimal, path: str) -> Decimal:
    if not value.is_finite():
        raise InvalidValue(f"{path} must be a finite number", field=path)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, so not 'n'/'N'/'F'
    if abs(exponent) > MAX_EXPONENT or abs(value.adjusted()) > MAX_EXPONENT:
        raise InvalidValue(f"{path} is out of range", field=path)
    return value


def as_number(value: Any, path: str) -> Decimal:
    """A JSON number as an exact `Decimal` (the JSON text's digits, never via float)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise wrong_type(path, "a number", value)
    if isinstance(value, int):
        if abs(value) >= 10**MAX_EXPONENT:
            raise InvalidValue(f"{path} is out of range", field=path)
        return Decimal(value)
    return _bounded(value, path)


def as_decimal(value: Any, path: str) -> Decimal:
    """A JSON number, or a string holding a decimal number (e.g. "100.50"), as `Decimal`."""
    if not isinstance(value, str):
        return as_number(value, path)
    text = value.strip()
    if not re.fullmatch(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?", text):
        raise InvalidValue(f"{path} is not a decimal number: {value[:40]!r}", field=path)
    try:
        return _bounded(Decimal(text), path)
    except InvalidOperation as e:  # pragma: no cover - the pattern admits only valid text
        raise InvalidValue(f"{path} is not a decimal number", field=path) from e


def epc_hex(value: Any, path: str) -> str:
    """An EPC as uppercase hex: whole bytes, 1..64 of them (Gen2 EPC banks hold up to 62)."""
    text = as_str(value, path, max_len=128)
    if not _HEX.fullmatch(text):
        raise InvalidValue(f"{path} is not a hex EPC: {text[:40]!r}", field=path)
    return text.upper()


def tag_code(value: Any, path: str) -> str:
    """A tag or barcode code: uppercase hex when it is hex, else the code verbatim
    (printable ASCII without spaces, e.g. a GS1 URN)."""
    text = as_str(value, path)
    if _HEX.fullmatch(text):
        return text.upper()
    if not _TAG_CODE.fullmatch(text):
        raise InvalidValue(f"{path} is not a tag code: {text[:40]!r}", field=path)
    return text


# --- time -----------------------------------------------------------------------------------


def parse_offset(value: str, path: str) -> timezone:
    """A UTC offset "Z", "+08:00", "-0500" or "+08" as a `timezone`."""
    if value in ("Z", "z"):
        return UTC
    match = re.fullmatch(r"([+-])([0-9]{2})(?::?([0-9]{2}))?", value, re.ASCII)
    if not match:
        raise BadTimestamp(f"{path} is not a UTC offset: {value[:40]!r}", field=path)
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
    if delta >= timedelta(hours=24) or int(minutes or 0) > 59:
        raise BadTimestamp(f"{path} offset out of range: {value!r}", field=path)
    return timezone(-delta if sign == "-" else delta)


def parse_timestamp(value: Any, path: str, *, default_offset: timezone | None = None) -> datetime:
    """An RFC 3339 timestamp as a UTC `datetime`.

    Accepts "T", "t" or a space between date and time, a fraction of any length up to 12
    digits (truncated, not rounded, to microseconds: Impinj sends nanoseconds), and offsets
    "Z", "+08:00" or "+0800" (Zebra). Without an offset, `default_offset` applies if given
    (EPCIS `eventTimeZoneOffset`); otherwise the timestamp is refused: a local time of
    unknown zone cannot be placed on the ledger's timeline.
    """
    text = as_str(value, path, max_len=64)
    match = _RFC3339.fullmatch(text)
    if not match:
        raise BadTimestamp(f"{path} is not an RFC 3339 timestamp: {text!r}", field=path)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset is None and default_offset is None:
        raise BadTimestamp(f"{path} has no UTC offset: {text!r}", field=path)
    utc = offset in ("Z", "z")  # the common case: no offset to parse, no conversion
    tz = UTC if utc else parse_offset(offset, path) if offset is not None else default_offset
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz)
        return local if utc else local.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise BadTimestamp(f"{path} is not a valid time: {text!r} ({e})", field=path) from e


# --- units ----------------------------------------------------------------------------------


def to_kg(value: Decimal, unit: Any, path: str) -> Decimal:
    """`value` in `unit` (kg, g, t or lb; any case) converted to kilograms, exactly."""
    name = as_str(unit, path, max_len=16).strip().lower()
    factor = MASS_UNITS_KG.get(name)
    if factor is None:
        raise BadUnit(f"{path}: unknown mass unit {unit!r} (expected kg, g, t or lb)", unit=unit)
    return value * factor
