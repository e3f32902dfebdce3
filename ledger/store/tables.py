"""The ledger's tables (SQLAlchemy Core). Migrations in ledger/store/migrations mirror these.

Every facility-scoped table carries `facility_id` and leads its primary key or main index with
it: it is the distribution key when the ledger outgrows one PostgreSQL node (docs/scaling.md).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from ledger.store.types import DecimalType, UtcDateTime

metadata = MetaData()

site = Table(
    "site",
    metadata,
    Column("site_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
)

zone = Table(
    "zone",
    metadata,
    Column("zone_id", String(64), primary_key=True),
    Column("site_id", String(64), ForeignKey("site.site_id"), nullable=False),
    Column("name", String(200), nullable=False),
)

sku = Table(
    "sku",
    metadata,
    Column("sku_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("unit_mass_kg", DecimalType(), nullable=False),
    Column("mass_tolerance", DecimalType(), nullable=False),
    Column("currency", String(3), nullable=False),
)

borrower = Table(
    "borrower",
    metadata,
    Column("borrower_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("tier", String(16), nullable=False),
)

facility = Table(
    "facility",
    metadata,
    Column("facility_id", String(64), primary_key=True),
    Column("borrower_id", String(64), ForeignKey("borrower.borrower_id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("commitment", DecimalType(), nullable=False),
    Column("reserves", DecimalType(), nullable=False),
    Column("max_age_days", Integer, nullable=False),
    Column("liquidation_horizon_days", Integer, nullable=False),
    Column("warning_ltv", DecimalType(), nullable=False),
    Column("liquidation_ltv", DecimalType(), nullable=False),
    Column("max_price_age_s", Integer, nullable=False),
    Column("haircut_floor", DecimalType(), nullable=False),
    Column("haircut_cap", DecimalType(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

facility_sku = Table(
    "facility_sku",
    metadata,
    Column("facility_id", String(64), ForeignKey("facility.facility_id"), primary_key=True),
    Column("sku_id", String(64), ForeignKey("sku.sku_id"), primary_key=True),
    Column("advance_rate", DecimalType(), nullable=False),
    Column("concentration_limit", DecimalType(), nullable=False),
)

facility_site = Table(
    "facility_site",
    metadata,
    Column("facility_id", String(64), ForeignKey("facility.facility_id"), primary_key=True),
    Column("site_id", String(64), ForeignKey("site.site_id"), primary_key=True),
)

lot = Table(
    "lot",
    metadata,
    Column("lot_id", String(64), primary_key=True),
    Column("facility_id", String(64), ForeignKey("facility.facility_id"), nullable=False),
    Column("epc", String(128), nullable=False, unique=True),
    Column("sku_id", String(64), ForeignKey("sku.sku_id"), nullable=False),
    Column("quantity", DecimalType(), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("zone_id", String(64), nullable=True),
    Column("status", String(24), nullable=False),
    Column("pledged", Boolean, nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("received_at", UtcDateTime(), nullable=True),
    Index("ix_lot_facility_status_received", "facility_id", "status", "received_at"),
    Index("ix_lot_facility_site_zone", "facility_id", "site_id", "zone_id"),
)

# The pledge registry: one row per pledged EPC. The primary key on `epc` is what makes a second
# pledge of the same goods impossible, even for two transactions racing on two nodes.
pledge = Table(
    "pledge",
    metadata,
    Column("epc", String(128), primary_key=True),
    Column("lot_id", String(64), nullable=False, unique=True),
    Column("facility_id", String(64), nullable=False, index=True),
    Column("pledged_at", UtcDateTime(), nullable=False),
)

pledge_refusal = Table(
    "pledge_refusal",
    metadata,
    Column("refusal_id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("epc", String(128), nullable=False, index=True),
    Column("lot_id", String(64), nullable=True),
    Column("requested_by", String(64), nullable=False),
    Column("pledged_to", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

journal_entry = Table(
    "journal_entry",
    metadata,
    Column("facility_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("lot_id", String(64), nullable=False),
    Column("epc", String(128), nullable=False),
    Column("sku_id", String(64), nullable=False),
    Column("quantity", DecimalType(), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("zone_id", String(64), nullable=True),
    Column("status", String(24), nullable=False),
    Column("pledged", Boolean, nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("received_at", UtcDateTime(), nullable=True),
    Column("evidence", JSON, nullable=False),
    Column("reason", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_journal_facility_at", "facility_id", "at"),
    Index("ix_journal_facility_lot", "facility_id", "lot_id"),
)

# One row per facility: the head of its hash chain. Locking this row serialises appends.
journal_head = Table(
    "journal_head",
    metadata,
    Column("facility_id", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

price = Table(
    "price",
    metadata,
    Column("price_id", Integer, primary_key=True, autoincrement=True),
    Column("sku_id", String(64), ForeignKey("sku.sku_id"), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("price", DecimalType(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("source", String(64), nullable=False),
    Index("ix_price_sku_at", "sku_id", "at"),
)

# Latest price and volatility per SKU, refreshed on every price.
sku_market = Table(
    "sku_market",
    metadata,
    Column("sku_id", String(64), primary_key=True),
    Column("price", DecimalType(), nullable=False),
    Column("price_at", UtcDateTime(), nullable=False),
    Column("sigma", DecimalType(), nullable=True),
    Column("returns", Integer, nullable=False),
)

# Incrementally maintained aggregates per facility and SKU (see ledger/service.py).
position = Table(
    "position",
    metadata,
    Column("facility_id", String(64), primary_key=True),
    Column("sku_id", String(64), primary_key=True),
    Column("pledged_qty", DecimalType(), nullable=False),
    Column("eligible_qty", DecimalType(), nullable=False),
    Column("price", DecimalType(), nullable=True),
    Column("price_at", UtcDateTime(), nullable=True),
    Column("haircut", DecimalType(), nullable=False),
    Index("ix_position_sku", "sku_id"),
)

facility_state = Table(
    "facility_state",
    metadata,
    Column("facility_id", String(64), primary_key=True),
    Column("borrowing_base", DecimalType(), nullable=False),
    Column("market_value", DecimalType(), nullable=False),
    Column("computed_at", UtcDateTime(), nullable=False),
)
