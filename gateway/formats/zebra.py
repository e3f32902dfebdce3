"""Zebra fixed readers (FX7500, FX9600, ATR7000) through the IoT Connector, tag data events.

A payload is one event, a JSON array of events, or events run together with no separator
(`}{`) or separated by newlines, as the connector batches them:

    {"type": "SIMPLE", "timestamp": "2024-03-01T10:00:00.123+0000",
     "data": {"idHex": "3034257BF7194E4000001A85", "antenna": 2, "peakRssi": -58,
              "reads": 3, "eventNum": 118, "format": "epc", "MAC": "84:24:8D:EE:7A:1C"}}

Mapping: timestamp (offset "+0000" accepted) -> at; data.idHex -> epc (uppercase hex);
data.antenna -> antenna; data.peakRssi (integer dBm) -> rssi_dbm. Other `type` values are
skipped. `data.format` other than "epc" (a reader set to report TID or user memory) is
refused as bad_value: those ids are not EPCs and silently dropping them would hide the
misconfiguration. `reads` (reads merged by the reader) is not carried.

event_key: "{device_id}:{eventNum}@{at}" when eventNum is present - the timestamp is part of
the key because eventNum restarts when the reader reboots, and a bare counter would make
fresh reads look like duplicates. Without eventNum: "{device_id}:" + sha256 of the event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.device import DeviceContext
from gateway.errors import InvalidValue
from gateway.formats import _fields as f
from gateway.observation import Observation, TagRead

__all__ = ["decode"]


def decode(raw: bytes, device: DeviceContext, now: datetime) -> list[Observation]:
    """Zebra tag data events -> one TagRead per SIMPLE event. `now` is unused."""
    out: list[Observation] = []
    events: list[Any] = []
    for value in f.load_json_stream(raw):
        events.extend(value if isinstance(value, list) else [value])
    for index, event in enumerate(events):
        read = _tag_read(event, f"[{index}]", device)
        if read is not None:
            out.append(read)
    return out


def _tag_read(value: Any, path: str, device: DeviceContext) -> TagRead | None:
    event = f.as_object(value, path)
    if f.as_str(f.require(event, "type", path), f.join(path, "type")) != "SIMPLE":
        return None
    at = f.parse_timestamp(f.require(event, "timestamp", path), f.join(path, "timestamp"))
    where = f.join(path, "data")
    data = f.as_object(f.require(event, "data", path), where)
    tag_format = data.get("format")
    if tag_format is not None and f.as_str(tag_format, f.join(where, "format")) != "epc":
        raise InvalidValue(
            f"{where}.format is {tag_format!r}: the reader must report EPCs (format 'epc')",
            field=f.join(where, "format"),
        )
    antenna, rssi, number = data.get("antenna"), data.get("peakRssi"), data.get("eventNum")
    if number is None:
        key = f"{device.device_id}:{f.digest(event)}"
    else:
        number = f.as_int(number, f.join(where, "eventNum"), minimum=0)
        key = f"{device.device_id}:{number}@{at:%Y%m%dT%H%M%S.%fZ}"
    return TagRead(
        device_id=device.device_id,
        at=at,
        event_key=key,
        epc=f.epc_hex(f.require(data, "idHex", where), f.join(where, "idHex")),
        antenna=None if antenna is None else f.as_int(antenna, f.join(where, "antenna"), minimum=0),
        rssi_dbm=None if rssi is None else f.as_number(rssi, f.join(where, "peakRssi")),
        direction=None,
    )
