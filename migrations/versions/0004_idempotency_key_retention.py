"""idempotency keys: index by creation time, for forgetting old ones daily

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 12:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_idempotency_record_created_at", "idempotency_record", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_idempotency_record_created_at", table_name="idempotency_record")
