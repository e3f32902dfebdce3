"""A warehouse with devices, for ingest and gateway tests: one site (SH1 by default; tests that
share a real Mosquitto with other runs take a unique site, so that their topics
`pledge/v1/{site}/...` never meet), zones {site}-A and {site}-B, copper and steel, facility F1
approved at that site, expected pledged lots with known EPCs, registered devices, and little
device simulators that sign like the firmware does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.formats.native import encode_event
from gateway.ingest import Ingest, IngestConfig
from gateway.metrics import GatewayMetrics
from gateway.mqtt import InboundMessage
from gateway.registry import DeviceRegistry, DeviceSpec
from gateway.topics import events_topic, status_topic
from ledger.core.reference import Borrower, Site, Zone
from ledger.service import LedgerService
from tests.ledger.world import copper, facility, lot, price, steel

D = Decimal
SECRET = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")

# device id -> (kind, zone suffix, format, antenna sides)
DEVICES: dict[str, tuple[str, str, str, dict[int, str]]] = {
    "gate-1": ("rfid_gate", "A", "native", {1: "outside", 2: "inside"}),
    "zone-1": ("rfid_zone", "B", "native", {}),
    "scale-1": ("scale", "A", "native", {}),
    "cam-1": ("camera", "A", "native", {}),
    "impinj-1": ("rfid_gate", "A", "impinj", {1: "outside", 2: "inside"}),
    "zebra-1": ("rfid_zone", "B", "zebra", {}),
    "epcis-1": ("rfid_zone", "B", "epcis", {}),
    "scalej-1": ("scale", "B", "scale_json", {}),
    "sics-1": ("scale", "B", "mtsics", {}),
    "axis-1": ("camera", "B", "camera", {}),
}


def epc(n: int) -> str:
    """The EPC of lot n in tests/ledger/world.py."""
    return f"E28011700000{n:012X}"


def message(topic: str, payload: bytes, mid: int = 1, retain: bool = False) -> InboundMessage:
    return InboundMessage(topic, payload, mid, 1, retain, False, 0.0)


@dataclass
class NativeDevice:
    """A device running our firmware: signs, and counts its own seq."""

    device_id: str
    site_id: str = "SH1"
    secret: bytes = SECRET
    seq: int = 0

    def event(
        self, type: str, body: dict[str, Any], at: datetime, seq: int | None = None
    ) -> tuple[str, bytes]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return events_topic(self.site_id, self.device_id), encode_event(
            self.device_id, seq, at, type, body, self.secret)

    def read(self, tag: str, at: datetime, antenna: int = 1, rssi: str = "-60.5") -> tuple[str, bytes]:
        return self.event("rfid.read", {"epc": tag, "antenna": antenna, "rssi_dbm": D(rssi)}, at)

    def heartbeat(self, at: datetime) -> tuple[str, bytes]:
        _topic, raw = self.event("heartbeat", {"status": "online", "uptime_s": 10}, at)
        return status_topic(self.site_id, self.device_id), raw

    def passage(
        self, tag: str, start: datetime, inward: bool = True, reads: int = 6
    ) -> list[tuple[str, bytes]]:
        """A tag carried through the gate: seen first on one side, then on the other."""
        first, second = (1, 2) if inward else (2, 1)
        out = []
        for k in range(reads):
            antenna = first if k < reads // 2 else second
            out.append(self.read(tag, start + timedelta(milliseconds=200 * k), antenna))
        return out


@dataclass
class World:
    ledger: LedgerService
    registry: DeviceRegistry
    metrics: GatewayMetrics
    clock: Any
    site: str = "SH1"
    devices: dict[str, NativeDevice] = field(default_factory=dict)

    def native(self, device_id: str) -> NativeDevice:
        return self.devices.setdefault(device_id, NativeDevice(device_id, self.site))

    def topic(self, device_id: str) -> str:
        return events_topic(self.site, device_id)

    def ingest(self, **config: Any) -> Ingest:
        defaults: dict[str, Any] = {"debounce_s": 1.0}
        defaults.update(config)
        return Ingest(self.ledger, self.clock, self.metrics, IngestConfig(**defaults))


async def make_world(
    store: Any, clock: Any, lots: int = 6, devices: dict[str, Any] | None = None, site: str = "SH1"
) -> World:
    """The site with a price, `lots` expected pledged lots of F1 in zone {site}-A, the devices."""
    ledger = LedgerService(store, clock)
    await ledger.add(Site(site, "Bonded warehouse"))
    for suffix in ("A", "B"):
        await ledger.add(Zone(f"{site}-{suffix}", site, f"Hall {suffix}"))
    await ledger.add(copper())
    await ledger.add(steel())
    await ledger.add(Borrower("B1", "Acme Metals Trading", "B"))
    await ledger.create_facility(facility("F1", approved_sites=frozenset({site})))
    await price(ledger, "CU-CATH", "8000")  # one price: the haircut is the cap (60 %), BB > 0
    if lots:
        await ledger.register_lots([lot(n, pledge=True, site_id=site, zone_id=f"{site}-A")
                                    for n in range(1, lots + 1)])
    registry = DeviceRegistry(store, clock)
    for device_id, (kind, zone, fmt, sides) in (devices or DEVICES).items():
        secret = SECRET.hex() if fmt == "native" else None
        await registry.register(DeviceSpec(device_id, site, f"{site}-{zone}", kind, fmt, secret,
                                           sides, 30))
    return World(ledger, registry, GatewayMetrics(CollectorRegistry()), clock, site)


def processed(metrics: GatewayMetrics) -> float:
    """Messages ingest has finished with (committed, duplicate, ignored or dead-lettered)."""
    v = metrics.value
    dead = sum(
        s.value
        for family in metrics.registry.collect()
        if family.name == "pledge_gateway_dead_letters"
        for s in family.samples
        if s.name.endswith("_total")
    )
    return (v("pledge_gateway_messages_committed_total") + v("pledge_gateway_duplicates_total")
            + v("pledge_gateway_ignored_total", what="empty") + dead)


def jbytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def prime(world: World) -> tuple[str, bytes]:
    """A valid zone-1 read (seq 1), to commit before `bad_inputs`."""
    return world.native("zone-1").read(epc(2), world.clock())


def bad_inputs(world: World) -> dict[str, tuple[str, bytes]]:
    """One message per refusal reason of the issue, as a device (or an impostor) would send it.
    Only the bad_topic message needs a wildcard subscription to arrive (its device id is bad)."""
    now = world.clock()
    gate = world.native("gate-1")
    topic = world.topic("gate-1")
    signed = gate.read(epc(1), now)[1]
    unsigned = {k: v for k, v in json.loads(signed).items() if k != "sig"}
    body = {"epc": epc(1), "antenna": 1, "rssi_dbm": -60}
    return {
        "malformed_json": (topic, b'{"device_id": "gate-1", "seq": '),
        "unknown_device": (world.topic("ghost-9"), signed),
        "device_mismatch": (topic, encode_event("zone-1", 1, now, "rfid.read", body, SECRET)),
        "bad_signature": (topic, encode_event("gate-1", 100, now, "rfid.read", body, b"x" * 32)),
        "missing_signature": (topic, jbytes(unsigned)),
        "wrong_type": (topic, encode_event("gate-1", 101, now, "rfid.read",
                                           {**body, "antenna": "1"}, SECRET)),
        "bad_unit": (world.topic("scalej-1"), jbytes({"weight": 5, "unit": "stone", "stable": True})),
        "future_timestamp": (topic, encode_event("gate-1", 102, now + timedelta(hours=1),
                                                 "rfid.read", body, SECRET)),
        "payload_too_large": (topic, b"{" + b" " * 300_000 + b"}"),
        "bad_topic": (f"pledge/v1/{world.site}/bad device!/events", signed),
        "unknown_event_type": (topic, encode_event("gate-1", 103, now, "rfid.kill", body, SECRET)),
        # zone-1's seq 1 again, with other content: stale once `prime` committed seq 1
        "stale_sequence": (world.topic("zone-1"), encode_event("zone-1", 1, now, "rfid.read",
                                                               {**body, "rssi_dbm": -42}, SECRET)),
    }
