"""The device registry: which devices may publish, where they stand, how to read them.

Used by `pledge devices register|list`, by `POST/GET /v1/devices`, and by ingest (which keeps
an in-memory copy, refreshed periodically and on an unknown device id).

A device is registered once: its id is global (native payloads and event keys carry it alone),
its site and zone must exist in the ledger's reference data (a gate's zone is where received
goods are booked), and its payload format must have a decoder. A native device gets an HMAC
secret (generated when none is given; shown once, at registration). Errors::

    GatewayError
    └── RegistryError
        ├── InvalidDevice    a field is invalid (`field` names it)       -> HTTP 422
        ├── DeviceExists     the id is taken                             -> HTTP 409
        └── DeviceNotFound   no such device                              -> HTTP 404
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, get_args

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway.device import AntennaSide, DeviceContext, DeviceKind
from gateway.errors import GatewayError
from gateway.formats import FORMATS
from gateway.tables import device, device_state
from ledger.core.reference import Site, Zone
from ledger.store.port import LedgerStore

__all__ = [
    "KINDS",
    "Device",
    "DeviceExists",
    "DeviceNotFound",
    "DeviceRegistry",
    "DeviceSpec",
    "DeviceStatus",
    "InvalidDevice",
    "RegistryError",
]

KINDS: tuple[str, ...] = get_args(DeviceKind)
SIDES: tuple[str, ...] = get_args(AntennaSide)
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the topic grammar's id (gateway/topics.py)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){16,128}")
SECRET_BYTES = 32
MAX_HEARTBEAT_INTERVAL_S = 86_400


class RegistryError(GatewayError):
    """A registry operation refused."""


class InvalidDevice(RegistryError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class DeviceExists(RegistryError):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"device {device_id} is already registered", device_id=device_id)
        self.device_id = device_id


class DeviceNotFound(RegistryError):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"no device {device_id}", device_id=device_id)
        self.device_id = device_id


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What an operator registers. `secret_hex` (native only): 16..128 bytes as hex; None
    generates 32 random bytes. `antenna_sides` (gates only): antenna port -> outside|inside."""

    device_id: str
    site_id: str
    zone_id: str
    kind: str
    format: str
    secret_hex: str | None = field(default=None, repr=False)
    antenna_sides: Mapping[int, str] = field(default_factory=dict)
    heartbeat_interval_s: int = 60


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device. `secret` is never part of a repr or a public view."""

    device_id: str
    site_id: str
    zone_id: str | None
    kind: DeviceKind
    format: str
    antenna_sides: Mapping[int, AntennaSide]
    heartbeat_interval_s: int
    registered_at: datetime
    active: bool
    secret: bytes | None = field(default=None, repr=False)

    def context(self) -> DeviceContext:
        """What the decoders and the portal need."""
        return DeviceContext(self.device_id, self.site_id, self.zone_id, self.kind, self.format,
                             self.secret, self.antenna_sides)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device and its liveness: `last_seen_at` is the gateway's time of the last accepted
    message, `last_seq` the highest native sequence number committed."""

    device: Device
    online: bool
    last_seen_at: datetime | None
    last_seq: int | None
    changed_at: datetime | None


def validate(spec: DeviceSpec) -> tuple[bytes | None, dict[int, AntennaSide]]:
    """Check a spec without IO; return its secret (generated for native) and antenna map."""
    for name in ("device_id", "site_id", "zone_id"):
        value = getattr(spec, name)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise InvalidDevice(name, f"{value!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if spec.kind not in KINDS:
        raise InvalidDevice("kind", f"{spec.kind!r} is not one of {', '.join(KINDS)}")
    if spec.format not in FORMATS:
        raise InvalidDevice("format", f"{spec.format!r} is not one of {', '.join(sorted(FORMATS))}")
    if not 1 <= spec.heartbeat_interval_s <= MAX_HEARTBEAT_INTERVAL_S:
        raise InvalidDevice("heartbeat_interval_s", f"must be 1..{MAX_HEARTBEAT_INTERVAL_S} seconds")
    return _secret(spec), _antennas(spec)


def _secret(spec: DeviceSpec) -> bytes | None:
    if spec.format != "native":
        if spec.secret_hex is not None:
            raise InvalidDevice("secret", "only native devices sign their messages")
        return None
    if spec.secret_hex is None:
        return secrets.token_bytes(SECRET_BYTES)
    if not _HEX.fullmatch(spec.secret_hex):
        raise InvalidDevice("secret", "must be 16..128 bytes written as hex")
    return bytes.fromhex(spec.secret_hex)


def _antennas(spec: DeviceSpec) -> dict[int, AntennaSide]:
    sides: dict[int, AntennaSide] = {}
    for port, side in spec.antenna_sides.items():
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidDevice("antenna_sides", f"antenna port {port!r} must be 0..65535")
        if side not in SIDES:
            raise InvalidDevice("antenna_sides", f"side {side!r} must be outside or inside")
        sides[port] = side  # type: ignore[assignment]  # checked just above
    if sides and spec.kind != "rfid_gate":
        raise InvalidDevice("antenna_sides", "only gate readers (rfid_gate) have antenna sides")
    if sides and set(sides.values()) != set(SIDES):
        raise InvalidDevice("antenna_sides", "a gate needs antennas on both sides (outside and inside)")
    return sides


def device_from_row(r: Any) -> Device:
    return Device(
        device_id=r.device_id,
        site_id=r.site_id,
        zone_id=r.zone_id,
        kind=r.kind,
        format=r.format,
        antenna_sides=MappingProxyType({int(k): v for k, v in (r.antenna_sides or {}).items()}),
        heartbeat_interval_s=r.heartbeat_interval_s,
        registered_at=r.registered_at,
        active=r.active,
        secret=bytes.fromhex(r.secret) if r.secret else None,
    )


class DeviceRegistry:
    """Devices in the platform's database (the ledger's store, gateway tables)."""

    def __init__(self, store: LedgerStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def register(self, spec: DeviceSpec) -> tuple[Device, str | None]:
        """Register a device; returns it and, for a native device, its secret as hex (the only
        time it is shown). Raises InvalidDevice, DeviceExists."""
        secret, sides = validate(spec)
        now = self.clock()
        async with self.store.transaction() as tx:
            await _check_location(tx, spec.site_id, spec.zone_id)
            taken = await tx.conn.execute(select(device.c.device_id).where(
                device.c.device_id == spec.device_id))
            if taken.first() is not None:
                raise DeviceExists(spec.device_id)
            try:
                await tx.conn.execute(device.insert().values(
                    site_id=spec.site_id, device_id=spec.device_id, kind=spec.kind,
                    zone_id=spec.zone_id, format=spec.format,
                    secret=secret.hex() if secret else None,
                    antenna_sides={str(k): v for k, v in sorted(sides.items())},
                    heartbeat_interval_s=spec.heartbeat_interval_s, registered_at=now, active=True))
                await tx.conn.execute(device_state.insert().values(
                    site_id=spec.site_id, device_id=spec.device_id, last_seq=None,
                    last_seen_at=None, online=False, changed_at=None))
            except IntegrityError as e:  # a concurrent registration of the same id
                raise DeviceExists(spec.device_id) from e
        found = Device(spec.device_id, spec.site_id, spec.zone_id, spec.kind,  # type: ignore[arg-type]
                       spec.format, MappingProxyType(sides), spec.heartbeat_interval_s, now, True,
                       secret)
        return found, secret.hex() if secret else None

    async def list(self, site_id: str | None = None, *, active_only: bool = False) -> builtins.list[Device]:
        """Devices ordered by site and id."""
        q = select(device).order_by(device.c.site_id, device.c.device_id)
        if site_id is not None:
            q = q.where(device.c.site_id == site_id)
        if active_only:
            q = q.where(device.c.active.is_(True))
        async with self.store.transaction() as tx:
            return [device_from_row(r) for r in await tx.conn.execute(q)]

    async def get(self, device_id: str) -> Device:
        async with self.store.transaction() as tx:
            row = (await tx.conn.execute(select(device).where(device.c.device_id == device_id))).first()
        if row is None:
            raise DeviceNotFound(device_id)
        return device_from_row(row)

    async def status(self, device_id: str) -> DeviceStatus:
        found = await self.statuses(device_id=device_id)
        if not found:
            raise DeviceNotFound(device_id)
        return found[0]

    async def statuses(
        self, site_id: str | None = None, *, device_id: str | None = None
    ) -> builtins.list[DeviceStatus]:
        """Devices with their liveness, ordered by site and id."""
        q = (
            select(device, device_state.c.online, device_state.c.last_seen_at,
                   device_state.c.last_seq, device_state.c.changed_at)
            .select_from(device.outerjoin(device_state, (device_state.c.site_id == device.c.site_id)
                                          & (device_state.c.device_id == device.c.device_id)))
            .order_by(device.c.site_id, device.c.device_id)
        )
        if site_id is not None:
            q = q.where(device.c.site_id == site_id)
        if device_id is not None:
            q = q.where(device.c.device_id == device_id)
        async with self.store.transaction() as tx:
            rows = builtins.list(await tx.conn.execute(q))
        return [DeviceStatus(device_from_row(r), bool(r.online), r.last_seen_at, r.last_seq,
                             r.changed_at) for r in rows]

    async def set_active(self, device_id: str, active: bool) -> Device:
        """Deactivate (its messages then go to dead letters as unknown_device) or reactivate."""
        async with self.store.transaction() as tx:
            res = await tx.conn.execute(
                update(device).where(device.c.device_id == device_id).values(active=active))
            if res.rowcount == 0:
                raise DeviceNotFound(device_id)
        return await self.get(device_id)


async def _check_location(tx: Any, site_id: str, zone_id: str) -> None:
    if await tx.get_reference(Site, site_id) is None:
        raise InvalidDevice("site_id", f"no site {site_id} in the ledger")
    zone = await tx.get_reference(Zone, zone_id)
    if zone is None or zone.site_id != site_id:
        raise InvalidDevice("zone_id", f"no zone {zone_id} in site {site_id}")
