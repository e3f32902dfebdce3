"""The API's own tables: bearer tokens (stored hashed) and idempotency records."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Integer, String, Table, Text

from ledger.store.tables import metadata
from ledger.store.types import UtcDateTime

api_token = Table(
    "api_token",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the secret, never the secret
    Column("role", String(24), nullable=False),
    Column("facility_id", String(64), nullable=True),
    Column("label", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked", Boolean, nullable=False),
)

# Idempotency-Key records (IETF httpapi draft / Stripe semantics), scoped per token.
idempotency_record = Table(
    "idempotency_record",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight | done
    Column("status_code", Integer, nullable=True),
    Column("body", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)
