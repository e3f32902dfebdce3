"""The gateway's tables (SQLAlchemy Core), on the ledger's shared `metadata`.

Migration: migrations/versions/0003_gateway.py. Site-scoped tables lead their primary key or
main index with `site_id` (the distribution key once one PostgreSQL node is not enough, as
`facility_id` is for the ledger). Evidence is kept forever and is queryable by
(site, zone, time); the deduplication table `seen_event` is pruned by age so that its cost
does not grow with history (see gateway/dedup.py).

    device              the registry: kind, site, zone, payload format, HMAC secret, antennas
    device_state        per device: last native seq, last seen, online
    device_event        online/offline transitions (heartbeat, status topic, sweep)
    seen_event          event keys already committed (dedup), pruned by `seen_at`
    tag_read            every RFID read: zone presence and gate reads (passage_id once closed)
    passage             one tag through one gate: direction, reads, lot, outcome
    weight_observation  stable scale readings (kg)
    camera_count        counts per label, with any tag codes read
    quantity_observation  EPCIS quantityList entries
    dead_letter         every refused message: reason, topic, raw bytes, detail
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    text,
)

from ledger.store.tables import metadata
from ledger.store.types import DecimalType, UtcDateTime

__all__ = [
    "camera_count",
    "dead_letter",
    "device",
    "device_event",
    "device_state",
    "passage",
    "quantity_observation",
    "seen_event",
    "tag_read",
    "weight_observation",
]

# A 64-bit surrogate key on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the autoincrementing
# rowid alias, so the variant keeps both happy.
RowId = BigInteger().with_variant(Integer(), "sqlite")

ID = 64  # length of site, zone and device ids (gateway.topics: [A-Za-z0-9_.-]{1,64})
KEY = 200  # event keys: "{device}:{seq}", "{device}:{sha256}#{suffix}", vendor event ids

device = Table(
    "device",
    metadata,
    Column("site_id", String(ID), primary_key=True),
    Column("device_id", String(ID), primary_key=True),
    Column("kind", String(16), nullable=False),  # rfid_gate | rfid_zone | scale | camera
    Column("zone_id", String(ID), nullable=True),
    Column("format", String(32), nullable=False),  # gateway.formats.FORMATS key
    Column("secret", String(256), nullable=True),  # hex HMAC key of a native device
    Column("antenna_sides", JSON, nullable=False),  # {"1": "outside", "2": "inside"} for gates
    Column("heartbeat_interval_s", Integer, nullable=False),
    Column("registered_at", UtcDateTime(), nullable=False),
    Column("active", Boolean, nullable=False),
    # Device ids are global: a native payload and its event keys name the device alone.
    Index("ux_device_id", "device_id", unique=True),
)

device_state = Table(
    "device_state",
    metadata,
    Column("site_id", String(ID), primary_key=True),
    Column("device_id", String(ID), primary_key=True),
    Column("last_seq", BigInteger, nullable=True),  # highest native seq committed
    Column("last_seen_at", UtcDateTime(), nullable=True),  # gateway time of the last accepted message
    Column("online", Boolean, nullable=False),
    Column("changed_at", UtcDateTime(), nullable=True),  # last online/offline transition
)

device_event = Table(
    "device_event",
    metadata,
    Column("event_id", RowId, primary_key=True, autoincrement=True),
    Column("site_id", String(ID), nullable=False),
    Column("device_id", String(ID), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),  # online | offline
    Column("source", String(16), nullable=False),  # heartbeat | message | status | sweep
    Column("detail", Text, nullable=False),
    Index("ix_device_event_site_device_at", "site_id", "device_id", "at"),
    Index("ix_device_event_at", "at"),
)

seen_event = Table(
    "seen_event",
    metadata,
    Column("site_id", String(ID), primary_key=True),
    Column("event_key", String(KEY), primary_key=True),
    Column("seen_at", UtcDateTime(), nullable=False),  # gateway time of the commit; pruned by it
    Column("digest", String(64), nullable=True),  # sha256 of a native payload: same seq, same bytes?
    Index("ix_seen_event_seen_at", "seen_at"),
)

tag_read = Table(
    "tag_read",
    metadata,
    Column("read_id", RowId, primary_key=True, autoincrement=True),
    Column("site_id", String(ID), nullable=False),
    Column("zone_id", String(ID), nullable=True),
    Column("device_id", String(ID), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("epc", String(256), nullable=False),
    Column("event_key", String(KEY), nullable=False),
    Column("antenna", Integer, nullable=True),
    Column("rssi_dbm", DecimalType(), nullable=True),
    Column("direction", String(3), nullable=True),  # the reader's own verdict, if any
    Column("gate", Boolean, nullable=False),  # read by an rfid_gate: belongs to a passage
    Column("passage_id", String(64), nullable=True),  # set when its passage closes
    Index("ix_tag_read_site_zone_at", "site_id", "zone_id", "at"),
    Index("ix_tag_read_site_epc_at", "site_id", "epc", "at"),
    # Gate reads whose passage has not closed yet: what a restarted gateway rebuilds its portals
    # from. Partial, so its size is the number of tags in doorways, not the history.
    Index(
        "ix_tag_read_open_gate",
        "device_id",
        "at",
        postgresql_where=text("gate AND passage_id IS NULL"),
        sqlite_where=text("gate AND passage_id IS NULL"),
    ),
)

passage = Table(
    "passage",
    metadata,
    Column("site_id", String(ID), primary_key=True),
    Column("passage_id", String(64), primary_key=True),  # sha256(device, epc, first event key)
    Column("device_id", String(ID), nullable=False),
    Column("zone_id", String(ID), nullable=True),
    Column("epc", String(256), nullable=False),
    Column("direction", String(3), nullable=True),  # in | out | None (undetermined)
    Column("first_seen", UtcDateTime(), nullable=False),
    Column("last_seen", UtcDateTime(), nullable=False),
    Column("reads", Integer, nullable=False),
    Column("lot_id", String(64), nullable=True),
    Column("facility_id", String(64), nullable=True),
    # receipt | authorised_release | removal_without_release | evidence_only | no_direction
    # | unknown_tag | ledger_rejected
    Column("outcome", String(32), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=False),
    Index("ix_passage_site_zone_last_seen", "site_id", "zone_id", "last_seen"),
    Index("ix_passage_site_epc", "site_id", "epc"),
)

def _observation(name: str, index: str, *own: Column[Any]) -> Table:
    """A table of one kind of zone observation: which site, zone and device, when, under which
    event key, then its own columns; indexed by (site, zone, time) for reconciliation."""
    return Table(
        name,
        metadata,
        Column("obs_id", RowId, primary_key=True, autoincrement=True),
        Column("site_id", String(ID), nullable=False),
        Column("zone_id", String(ID), nullable=True),
        Column("device_id", String(ID), nullable=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("event_key", String(KEY), nullable=False),
        *own,
        Index(index, "site_id", "zone_id", "at"),
    )


weight_observation = _observation(
    "weight_observation",
    "ix_weight_site_zone_at",
    Column("mass_kg", DecimalType(), nullable=False),
    Column("stable", Boolean, nullable=False),
)

camera_count = _observation(
    "camera_count",
    "ix_camera_site_zone_at",
    Column("label", String(256), nullable=False),
    Column("count", Integer, nullable=False),
    Column("confidence", DecimalType(), nullable=True),
    Column("epcs", JSON, nullable=False),
)

quantity_observation = _observation(
    "quantity_observation",
    "ix_quantity_site_zone_at",
    Column("epc_class", String(256), nullable=False),
    Column("quantity", DecimalType(), nullable=False),
    Column("uom", String(16), nullable=True),
    Column("direction", String(3), nullable=True),
)

dead_letter = Table(
    "dead_letter",
    metadata,
    Column("dead_letter_id", RowId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("topic", String(512), nullable=False),
    Column("raw", LargeBinary, nullable=False),  # at most MAX_PAYLOAD_BYTES (truncated beyond)
    Column("size", Integer, nullable=False),  # the payload's full size in bytes
    Column("detail", Text, nullable=False),
    Column("site_id", String(ID), nullable=True),  # from the topic, when it parsed
    Column("device_id", String(ID), nullable=True),
    Index("ix_dead_letter_reason_at", "reason", "at"),
    Index("ix_dead_letter_at", "at"),
)
