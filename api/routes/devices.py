"""Devices: register a device, list them, read one with its liveness (staff only).

The secret of a native device is returned once, by the registration; it is never readable
again (it is the device's HMAC key: rotate by registering a new device id).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PlatformDep, Staff
from api.platform import Platform
from api.problems import ApiProblem
from gateway.registry import (
    Device,
    DeviceExists,
    DeviceNotFound,
    DeviceRegistry,
    DeviceSpec,
    DeviceStatus,
    InvalidDevice,
    RegistryError,
)

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceIdent = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
DeviceIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class DeviceCreate(BaseModel):
    """A device to register. `secret` (native only): hex, 16..128 bytes; omitted -> generated."""

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceIdent
    site_id: DeviceIdent
    zone_id: DeviceIdent
    kind: Literal["rfid_gate", "rfid_zone", "scale", "camera"]
    format: str = Field(min_length=1, max_length=32, examples=["native", "impinj"])
    secret: str | None = Field(None, min_length=32, max_length=256)
    antenna_sides: dict[int, Literal["outside", "inside"]] = Field(
        default_factory=dict, examples=[{"1": "outside", "2": "inside"}]
    )
    heartbeat_interval_s: int = Field(60, ge=1, le=86_400)


def device_view(d: Device) -> dict[str, Any]:
    return {
        "device_id": d.device_id,
        "site_id": d.site_id,
        "zone_id": d.zone_id,
        "kind": d.kind,
        "format": d.format,
        "antenna_sides": {str(k): v for k, v in sorted(d.antenna_sides.items())},
        "heartbeat_interval_s": d.heartbeat_interval_s,
        "registered_at": d.registered_at.isoformat(),
        "active": d.active,
        "signed": d.secret is not None,
    }


def status_view(s: DeviceStatus) -> dict[str, Any]:
    return {
        **device_view(s.device),
        "status": {
            "online": s.online,
            "last_seen_at": s.last_seen_at.isoformat() if s.last_seen_at else None,
            "last_seq": s.last_seq,
            "changed_at": s.changed_at.isoformat() if s.changed_at else None,
        },
    }


def registry_of(platform: Platform) -> DeviceRegistry:
    """The platform's registry, or one over its store (the registry keeps no state)."""
    found = platform.devices
    return found if isinstance(found, DeviceRegistry) else DeviceRegistry(platform.store, platform.clock)


def problem(e: RegistryError) -> ApiProblem:
    """Registry errors -> HTTP problems, in one place."""
    if isinstance(e, InvalidDevice):
        return ApiProblem(422, "invalid_device", e.message, field=e.field)
    if isinstance(e, DeviceExists):
        return ApiProblem(409, "device_exists", e.message, device_id=e.device_id)
    if isinstance(e, DeviceNotFound):
        return ApiProblem(404, "device_not_found", e.message, device_id=e.device_id)
    return ApiProblem(400, "device_error", e.message)


@router.post("", status_code=201)
async def register_device(body: DeviceCreate, platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """Register a device; a native device's secret is in the answer, and only there."""
    spec = DeviceSpec(
        body.device_id,
        body.site_id,
        body.zone_id,
        body.kind,
        body.format,
        body.secret,
        dict(body.antenna_sides),
        body.heartbeat_interval_s,
    )
    try:
        device, secret = await registry_of(platform).register(spec)
    except RegistryError as e:
        raise problem(e) from e
    return {**device_view(device), "secret": secret}


@router.get("")
async def list_devices(
    platform: PlatformDep,
    _: Staff,
    site_id: str | None = Query(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$"),
) -> dict[str, Any]:
    """Every registered device with its liveness, by site and id."""
    statuses = await registry_of(platform).statuses(site_id)
    return {"items": [status_view(s) for s in statuses]}


@router.get("/{device_id}")
async def get_device(device_id: DeviceIdPath, platform: PlatformDep, _: Staff) -> dict[str, Any]:
    """One device: registration and status (online, last seen, last sequence number)."""
    try:
        return status_view(await registry_of(platform).status(device_id))
    except RegistryError as e:
        raise problem(e) from e
