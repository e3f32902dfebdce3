"""Impinj R700 "IoT device interface" tag events (MQTT/HTTP stream, JSON).

A payload is one event object, a JSON array of them, or newline-delimited objects:

    {"timestamp": "2024-03-01T10:00:00.123456789Z", "hostname": "impinj-14-7a-3c",
     "eventType": "tagInventory",
     "tagInventoryEvent": {"epc": "MDQlexlOQAAAGoU=", "epcHex": "3034257BF7194E4000001A85",
                           "antennaPort": 1, "antennaName": "dock-out", "peakRssiCdbm": -6500,
                           "frequency": 902750, "transmitPowerCdbm": 3000}}

Mapping: timestamp (nanoseconds, truncated to microseconds) -> at; epcHex (else base64 epc,
as uppercase hex) -> epc; antennaPort -> antenna (absent when the reader reports antenna
names only); peakRssiCdbm centi-dBm -> rssi_dbm in dBm (-6500 -> Decimal("-65.00")).
Other eventTypes (antennaConnectedEvent, inventoryStatus, diagnostic, ...) share the topic and
are skipped. Direction is left None: a gate's `Portal` infers it from antennas. The event
carries no id, so event_key = "{device_id}:" + sha256 of the event's canonical JSON.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.device import DeviceContext
from gateway.errors import InvalidValue
from gateway.formats import _fields as f
from gateway.observation import Observation, TagRead

__all__ = ["decode"]


def decode(raw: bytes, device: DeviceContext, now: datetime) -> list[Observation]:
    """Impinj events -> one TagRead per tagInventory event. `now` is unused (events carry
    their own timestamp)."""
    out: list[Observation] = []
    for index, event in enumerate(_events(raw)):
        read = _tag_read(event, f"[{index}]", device)
        if read is not None:
            out.append(read)
    return out


def _events(raw: bytes) -> list[Any]:
    events: list[Any] = []
    for value in f.load_json_stream(raw):
        events.extend(value if isinstance(value, list) else [value])
    return events


def _tag_read(value: Any, path: str, device: DeviceContext) -> TagRead | None:
    event = f.as_object(value, path)
    if f.as_str(f.require(event, "eventType", path), f.join(path, "eventType")) != "tagInventory":
        return None
    at = f.parse_timestamp(f.require(event, "timestamp", path), f.join(path, "timestamp"))
    where = f.join(path, "tagInventoryEvent")
    tag = f.as_object(f.require(event, "tagInventoryEvent", path), where)
    antenna = tag.get("antennaPort")
    rssi = tag.get("peakRssiCdbm")
    return TagRead(
        device_id=device.device_id,
        at=at,
        event_key=f"{device.device_id}:{f.digest(event)}",
        epc=_epc(tag, where),
        antenna=None if antenna is None else f.as_int(antenna, f.join(where, "antennaPort"), minimum=0),
        rssi_dbm=None if rssi is None else _centi(rssi, f.join(where, "peakRssiCdbm")),
        direction=None,
    )


def _epc(tag: dict[str, Any], path: str) -> str:
    if tag.get("epcHex") is not None:
        return f.epc_hex(tag["epcHex"], f.join(path, "epcHex"))
    where = f.join(path, "epc")
    text = f.as_str(f.require(tag, "epc", path), where, max_len=128)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidValue(f"{where} is not base64: {text[:40]!r}", field=where) from e
    return f.epc_hex(data.hex(), where)


def _centi(value: Any, path: str) -> Decimal:
    """centi-dBm (an integer) -> dBm with two decimals."""
    return Decimal(f.as_int(value, path, minimum=-100_000, maximum=100_000)).scaleb(-2)
