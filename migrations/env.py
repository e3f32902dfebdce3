"""Alembic environment. Migrations run through `ledger.store.schema.migrate`, which hands over
an open connection in `config.attributes["connection"]`; offline mode is not supported."""

from __future__ import annotations

from alembic import context

import api.tables  # noqa: F401  (registers its tables on the shared metadata)
import gateway.tables  # noqa: F401  (idem)
from ledger.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded for people running bare `alembic`
    raise RuntimeError("run migrations with `pledge db upgrade` (migrations.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table_schema=context.config.attributes.get("schema"),
)
with context.begin_transaction():
    context.run_migrations()
