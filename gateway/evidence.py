"""Evidence: what devices observed, stored by (site, zone, time) for reconciliation.

Rows are written by ingest inside its batch transaction (`EvidenceRows`); `EvidenceQueries`
reads them back by zone and time (a later issue reconciles them against the ledger).

* RFID reads: every read (zone presence and gate reads). A gate read's `passage_id` is set when
  its passage closes; until then it is an "open" read a restarted gateway rebuilds from.
* Weights: stable samples only (a scale in motion says nothing about what is on it).
* Camera counts per label, with the tag codes they read; EPCIS quantities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.bulk import insert_rows
from gateway.observation import CameraCount, QuantityObservation, TagRead, WeightSample
from gateway.tables import camera_count, passage, quantity_observation, tag_read, weight_observation
from ledger.store.port import LedgerStore

__all__ = ["EvidenceQueries", "EvidenceRows"]


@dataclass
class EvidenceRows:
    """Evidence rows of one transaction, by table."""

    tag_reads: list[dict[str, Any]] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)
    cameras: list[dict[str, Any]] = field(default_factory=list)
    quantities: list[dict[str, Any]] = field(default_factory=list)

    def read(self, r: TagRead, site_id: str, zone_id: str | None, gate: bool) -> None:
        self.tag_reads.append({
            "site_id": site_id, "zone_id": zone_id, "device_id": r.device_id, "at": r.at,
            "epc": r.epc, "event_key": r.event_key, "antenna": r.antenna, "rssi_dbm": r.rssi_dbm,
            "direction": r.direction, "gate": gate, "passage_id": None})

    def weight(self, w: WeightSample, site_id: str, zone_id: str | None) -> None:
        self.weights.append({
            "site_id": site_id, "zone_id": zone_id, "device_id": w.device_id, "at": w.at,
            "event_key": w.event_key, "mass_kg": w.mass_kg, "stable": w.stable})

    def camera(self, c: CameraCount, site_id: str, zone_id: str | None) -> None:
        self.cameras.append({
            "site_id": site_id, "zone_id": zone_id, "device_id": c.device_id, "at": c.at,
            "event_key": c.event_key, "label": c.label, "count": c.count,
            "confidence": c.confidence, "epcs": list(c.epcs)})

    def quantity(self, q: QuantityObservation, site_id: str, zone_id: str | None) -> None:
        self.quantities.append({
            "site_id": site_id, "zone_id": zone_id, "device_id": q.device_id, "at": q.at,
            "event_key": q.event_key, "epc_class": q.epc_class, "quantity": q.quantity,
            "uom": q.uom, "direction": q.direction})

    def __len__(self) -> int:
        return len(self.tag_reads) + len(self.weights) + len(self.cameras) + len(self.quantities)

    async def insert(self, conn: AsyncConnection) -> None:
        for table, rows in (
            (tag_read, self.tag_reads),
            (weight_observation, self.weights),
            (camera_count, self.cameras),
            (quantity_observation, self.quantities),
        ):
            await insert_rows(conn, table, rows)


class EvidenceQueries:
    """Evidence by site, zone and time window [since, until), oldest first."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    async def tag_reads(self, site_id: str, zone_id: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return await self._rows(tag_read, site_id, zone_id, **kw)

    async def weights(self, site_id: str, zone_id: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return await self._rows(weight_observation, site_id, zone_id, **kw)

    async def camera_counts(
        self, site_id: str, zone_id: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        return await self._rows(camera_count, site_id, zone_id, **kw)

    async def quantities(
        self, site_id: str, zone_id: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        return await self._rows(quantity_observation, site_id, zone_id, **kw)

    async def passages(
        self, site_id: str, zone_id: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        return await self._rows(passage, site_id, zone_id, time_column="last_seen", **kw)

    async def _rows(
        self,
        table: Table,
        site_id: str,
        zone_id: str | None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        epc: str | None = None,
        limit: int = 10_000,
        time_column: str = "at",
    ) -> list[dict[str, Any]]:
        at = table.c[time_column]
        q = select(table).where(table.c.site_id == site_id)
        if zone_id is not None:
            q = q.where(table.c.zone_id == zone_id)
        if since is not None:
            q = q.where(at >= since)
        if until is not None:
            q = q.where(at < until)
        if epc is not None:
            q = q.where(table.c.epc == epc)
        order: Sequence[Any] = (at, *table.primary_key.columns)
        async with self.store.transaction() as tx:
            rows = await tx.conn.execute(q.order_by(*order).limit(limit))
            return [dict(r._mapping) for r in rows]
