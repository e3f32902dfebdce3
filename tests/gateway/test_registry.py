"""The device registry on both stores: what may be registered, and what is refused (and why)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.registry import (
    DeviceExists,
    DeviceNotFound,
    DeviceRegistry,
    DeviceSpec,
    InvalidDevice,
    RegistryError,
)
from ledger.service import LedgerService
from tests.ledger.world import build

GATE = DeviceSpec("gate-01", "SH1", "SH1-A", "rfid_gate", "native",
                  antenna_sides={1: "outside", 2: "inside"}, heartbeat_interval_s=30)


@pytest.fixture
async def registry(store: Any, clock: Any) -> DeviceRegistry:
    await build(LedgerService(store, clock))
    return DeviceRegistry(store, clock)


async def test_a_native_gate_is_registered_with_a_generated_secret_shown_once(
    registry: DeviceRegistry, clock: Any
) -> None:
    device, secret = await registry.register(GATE)
    assert secret is not None and len(bytes.fromhex(secret)) == 32
    assert device.secret == bytes.fromhex(secret)
    assert secret not in repr(device)
    stored = await registry.get("gate-01")
    assert (stored.site_id, stored.zone_id, stored.kind, stored.format) == (
        "SH1", "SH1-A", "rfid_gate", "native")
    assert dict(stored.antenna_sides) == {1: "outside", 2: "inside"}
    assert stored.registered_at == clock() and stored.active
    context = stored.context()
    assert context.secret == device.secret and context.antenna_sides[2] == "inside"


async def test_a_given_secret_is_kept_and_vendor_devices_have_none(registry: DeviceRegistry) -> None:
    _, secret = await registry.register(DeviceSpec("scale-01", "SH1", "SH1-B", "scale", "native",
                                                   secret_hex="ab" * 16))
    assert secret == "ab" * 16
    device, none = await registry.register(DeviceSpec("r700-01", "SH1", "SH1-A", "rfid_zone", "impinj"))
    assert none is None and device.secret is None


async def test_list_and_status(registry: DeviceRegistry) -> None:
    await registry.register(GATE)
    await registry.register(DeviceSpec("cam-01", "SH1", "SH1-B", "camera", "camera"))
    assert [d.device_id for d in await registry.list()] == ["cam-01", "gate-01"]
    assert [d.device_id for d in await registry.list("QD2")] == []
    status = await registry.status("gate-01")
    assert (status.online, status.last_seen_at, status.last_seq) == (False, None, None)
    await registry.set_active("cam-01", False)
    assert [d.device_id for d in await registry.list(active_only=True)] == ["gate-01"]


@pytest.mark.parametrize(("spec", "field"), [
    (DeviceSpec("gate 01", "SH1", "SH1-A", "rfid_gate", "native"), "device_id"),
    (DeviceSpec("g1", "SH1", "SH1-A", "forklift", "native"), "kind"),
    (DeviceSpec("g1", "SH1", "SH1-A", "rfid_zone", "sparkplug"), "format"),
    (DeviceSpec("g1", "XX9", "SH1-A", "rfid_zone", "native"), "site_id"),
    (DeviceSpec("g1", "SH1", "QD2-Y", "rfid_zone", "native"), "zone_id"),  # a zone of another site
    (DeviceSpec("g1", "SH1", "SH1-A", "rfid_zone", "native", secret_hex="abc"), "secret"),
    (DeviceSpec("g1", "SH1", "SH1-A", "rfid_zone", "impinj", secret_hex="ab" * 16), "secret"),
    (DeviceSpec("g1", "SH1", "SH1-A", "rfid_gate", "native", antenna_sides={1: "outside"}),
     "antenna_sides"),
    (DeviceSpec("g1", "SH1", "SH1-A", "rfid_gate", "native", antenna_sides={1: "out", 2: "inside"}),
     "antenna_sides"),
    (DeviceSpec("g1", "SH1", "SH1-A", "scale", "native", antenna_sides={1: "outside", 2: "inside"}),
     "antenna_sides"),
    (DeviceSpec("g1", "SH1", "SH1-A", "scale", "native", heartbeat_interval_s=0), "heartbeat_interval_s"),
])
async def test_invalid_devices_are_refused_with_the_field(
    registry: DeviceRegistry, spec: DeviceSpec, field: str
) -> None:
    with pytest.raises(InvalidDevice) as e:
        await registry.register(spec)
    assert e.value.field == field
    assert await registry.list() == []


async def test_an_id_is_registered_once_and_unknown_ids_are_not_found(registry: DeviceRegistry) -> None:
    await registry.register(GATE)
    with pytest.raises(DeviceExists):
        await registry.register(GATE)
    with pytest.raises(DeviceExists):  # ids are global: not even at another site
        await registry.register(DeviceSpec("gate-01", "QD2", "QD2-Y", "rfid_zone", "impinj"))
    with pytest.raises(DeviceNotFound):
        await registry.get("nope")
    with pytest.raises(DeviceNotFound):
        await registry.status("nope")


def test_registry_errors_are_gateway_errors() -> None:
    for cls in (InvalidDevice, DeviceExists, DeviceNotFound):
        assert issubclass(cls, RegistryError) and issubclass(cls, GatewayError)
