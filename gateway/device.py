"""What the gateway knows about a device before it decodes a payload from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeAlias

__all__ = ["AntennaSide", "DeviceContext", "DeviceKind"]

DeviceKind: TypeAlias = Literal["rfid_gate", "rfid_zone", "scale", "camera"]
AntennaSide: TypeAlias = Literal["outside", "inside"]


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """A registered device, as decoders and the portal need it.

    `device_id` is the id in the topic (which the broker authenticated). `format` names its
    payload decoder (see `gateway.formats.FORMATS`). `secret` is the HMAC key of a native
    device (never printed in a repr). `antenna_sides` maps a gate reader's antenna ports to
    the side of the door they face; it is copied into a read-only mapping.
    """

    device_id: str
    site_id: str
    zone_id: str | None
    kind: DeviceKind
    format: str
    secret: bytes | None = field(default=None, repr=False)
    antenna_sides: Mapping[int, AntennaSide] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "antenna_sides", MappingProxyType(dict(self.antenna_sides)))
