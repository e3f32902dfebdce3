"""Payload decoders, one module per device format, and the registry that picks one.

Every decoder is a pure function `decode(raw: bytes, device: DeviceContext, now: datetime)
-> list[Observation]` that raises only `DecodeError` on bad input: no IO, no clock (`now` is
an input), no paho. The registry's `decode(format_name, raw, device, now)` is what the MQTT
adapter calls: it refuses oversized payloads before parsing, dispatches by name, and refuses
observations dated further ahead of `now` than `max_skew` (a device clock running fast would
otherwise date collateral in the future).

    name        module                     payload
    native      gateway.formats.native     our signed JSON envelope (docs/device-protocol.md)
    impinj      gateway.formats.impinj     Impinj R700 IoT device interface events
    zebra       gateway.formats.zebra      Zebra IoT Connector tag data events
    epcis       gateway.formats.epcis      GS1 EPCIS 2.0 JSON / JSON-LD ObjectEvents
    scale_json  gateway.formats.scale      JSON weight readings
    mtsics      gateway.formats.scale      Mettler-Toledo MT-SICS text responses
    camera      gateway.formats.camera     vision detection / count events
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TypeAlias

from gateway.device import AntennaSide, DeviceContext, DeviceKind
from gateway.errors import FutureTimestamp, PayloadTooLarge, UnknownFormat
from gateway.formats import camera, epcis, impinj, native, scale, zebra
from gateway.observation import Observation

__all__ = [
    "DEFAULT_MAX_SKEW",
    "FORMATS",
    "MAX_PAYLOAD_BYTES",
    "AntennaSide",
    "Decoder",
    "DeviceContext",
    "DeviceKind",
    "decode",
]

MAX_PAYLOAD_BYTES = 262_144
"""256 KiB: larger payloads are refused unparsed (payload_too_large)."""

DEFAULT_MAX_SKEW = timedelta(minutes=5)
"""How far ahead of the gateway's `now` a device timestamp may be (clock drift allowance)."""

Decoder: TypeAlias = Callable[[bytes, DeviceContext, datetime], list[Observation]]

FORMATS: Mapping[str, Decoder] = MappingProxyType(
    {
        "native": native.decode,
        "impinj": impinj.decode,
        "zebra": zebra.decode,
        "epcis": epcis.decode,
        "scale_json": scale.decode_json,
        "mtsics": scale.decode_mtsics,
        "camera": camera.decode,
    }
)
"""Decoder by format name (the `format` of a `DeviceContext`)."""


def decode(
    format_name: str,
    raw: bytes,
    device: DeviceContext,
    now: datetime,
    *,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> list[Observation]:
    """Decode `raw` from `device` with the named format.

    `now` is the gateway's current time (timezone-aware). Raises PayloadTooLarge above
    MAX_PAYLOAD_BYTES, UnknownFormat for a name not in FORMATS, FutureTimestamp when any
    observation is dated more than `max_skew` after `now`, and the decoder's DecodeError
    otherwise. An empty list means the payload held nothing to observe (e.g. an Impinj
    antenna event).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}",
            size=len(raw),
            device_id=device.device_id,
        )
    decoder = FORMATS.get(format_name)
    if decoder is None:
        raise UnknownFormat(
            f"unknown format {format_name!r}; expected one of {sorted(FORMATS)}",
            format=format_name,
        )
    observations = decoder(raw, device, now)
    limit = now + max_skew
    for observation in observations:
        if observation.at > limit:
            raise FutureTimestamp(
                f"observation at {observation.at.isoformat()} is more than {max_skew} "
                f"ahead of {now.isoformat()}",
                device_id=device.device_id,
                at=observation.at,
            )
    return observations
