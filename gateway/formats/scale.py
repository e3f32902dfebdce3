"""Scales: a common JSON shape ("scale_json") and Mettler-Toledo MT-SICS text ("mtsics").

There is no common weighing standard, so both are mapped to `WeightSample` in kilograms.

scale_json - one object:

    {"weight": 1250.5, "unit": "kg", "stable": true, "gross": "1300.5", "tare": "50.0",
     "net": "1250.5", "ts": "2024-03-01T10:00:00Z", "seq": 77}

  mass = net if present, else weight, else gross (number or decimal string), in unit kg / g /
  t / lb (any case; anything else -> bad_unit). `stable` absent -> False (not trusted for
  reconciliation). `ts` absent -> at = now.

mtsics - one or more CRLF- or LF-separated response lines:

    S S      100.00 kg      stable weight        (also "SI S ...": some gateways echo SI)
    S D       99.80 kg      dynamic (moving) -> stable False
    S I                     command not executable (busy)   -> scale_not_executable
    S +  /  S -             overload / underload            -> scale_overload / scale_underload
    ES / ET / EL            syntax / transmission / logical -> scale_command_error

  MT-SICS carries no time: at = now. Any error line refuses the whole payload.

event_key: "{device_id}:{seq}" when seq is present; else "{device_id}:" + sha256 of the device
id and the raw bytes - and of `now` when the payload has no time of its own. A scale repeating
an unchanged reading sends identical bytes, and those later readings must not be taken for
redeliveries (they prove the scale is alive); a true redelivery becomes one more sample of the
same level, which is harmless. MT-SICS keys get "#{line}" per weight line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gateway.device import DeviceContext
from gateway.errors import DeviceFault, MalformedPayload, MissingField
from gateway.formats import _fields as f
from gateway.observation import Observation, WeightSample

__all__ = ["decode", "decode_json", "decode_mtsics"]

_WEIGHT_LINE = re.compile(
    r"(?:S|SI)[ \t]+([SD])[ \t]+([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))[ \t]*([A-Za-z]{1,16})",
    re.ASCII,
)
_FAULT_LINES = {
    "S I": ("scale_not_executable", "scale cannot execute the command now (busy)"),
    "S +": ("scale_overload", "scale overload: load above capacity"),
    "S -": ("scale_underload", "scale underload: load below zero range"),
    "ES": ("scale_command_error", "scale reports a syntax error (ES)"),
    "ET": ("scale_command_error", "scale reports a transmission error (ET)"),
    "EL": ("scale_command_error", "scale reports a logical error (EL)"),
}


def decode(raw: bytes, device: DeviceContext, now: datetime) -> list[Observation]:
    """Either scale format, sniffed: a payload starting with "{" is scale_json, else MT-SICS."""
    if raw.lstrip()[:1] == b"{":
        return decode_json(raw, device, now)
    return decode_mtsics(raw, device, now)


def decode_json(raw: bytes, device: DeviceContext, now: datetime) -> list[Observation]:
    """A scale_json object -> one WeightSample (kg). `now` is the time when `ts` is absent."""
    now = now.astimezone(UTC)
    obj = f.as_object(f.load_json(raw), "")
    field = next((name for name in ("net", "weight", "gross") if obj.get(name) is not None), None)
    if field is None:
        raise MissingField("scale payload has no net, weight or gross", field="weight")
    value = f.as_decimal(obj[field], field)
    mass = f.to_kg(value, f.require(obj, "unit", ""), "unit")
    stable = obj.get("stable")
    ts = obj.get("ts")
    at = now if ts is None else f.parse_timestamp(ts, "ts")
    seq: Any = obj.get("seq")
    if seq is not None:
        seq = f.as_int(seq, "seq", minimum=0)
        key = f"{device.device_id}:{seq}"
    else:
        key = f"{device.device_id}:{_raw_digest(raw, device, now if ts is None else None)}"
    return [
        WeightSample(
            device_id=device.device_id,
            at=at,
            event_key=key,
            mass_kg=mass,
            stable=False if stable is None else f.as_bool(stable, "stable"),
            seq=seq,
        )
    ]


def decode_mtsics(raw: bytes, device: DeviceContext, now: datetime) -> list[Observation]:
    """MT-SICS weight response lines -> one WeightSample (kg) per line, all at `now`.
    Raises DeviceFault for the scale's error responses, MalformedPayload for anything else."""
    now = now.astimezone(UTC)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise MalformedPayload("MT-SICS payload is not ASCII") from e
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise MalformedPayload("empty MT-SICS payload")
    base = f"{device.device_id}:{_raw_digest(raw, device, now)}"
    out: list[Observation] = []
    for index, line in enumerate(lines):
        out.append(_weight_line(line, index, device, now, f"{base}#{index}"))
    return out


def _weight_line(line: str, index: int, device: DeviceContext, now: datetime, key: str) -> WeightSample:
    words = line.split()
    if words[0] == "SI":  # some gateways echo the command: "SI +" means "S +"
        words[0] = "S"
    fault = _FAULT_LINES.get(" ".join(words))
    if fault is not None:
        reason, message = fault
        raise DeviceFault(message, reason=reason, device_id=device.device_id, line=index)
    match = _WEIGHT_LINE.fullmatch(line)
    if match is None:
        raise MalformedPayload(f"line {index} is not an MT-SICS weight response: {line[:40]!r}", line=index)
    status, value, unit = match.groups()
    mass = f.to_kg(f.as_decimal(value, f"line {index}"), unit, f"line {index} unit")
    return WeightSample(device.device_id, now, key, mass, stable=status == "S")


def _raw_digest(raw: bytes, device: DeviceContext, now: datetime | None) -> str:
    parts = [device.device_id.encode("utf-8"), raw]
    if now is not None:
        parts.append(now.isoformat().encode("ascii"))
    return f.digest_bytes(*parts)
