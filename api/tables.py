"""The API's own table: bearer tokens (stored hashed). Idempotency records live with the money
(ledger/store/tables.py), since they commit in the same transaction as the postings."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, String, Table

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
