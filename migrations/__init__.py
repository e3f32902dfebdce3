"""Schema migrations (alembic) for every package's tables, in one chain on one database.

`migrate(engine)` brings a database to head; `pledge db upgrade` calls it. env.py imports the
table modules of ledger (collateral and money), gateway and api so autogenerate sees them all.
"""

from migrations.schema import autogenerate, migrate

__all__ = ["autogenerate", "migrate"]
