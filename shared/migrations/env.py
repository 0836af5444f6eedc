"""Alembic environment: runs on a connection handed in by shared.platform.migrate (sync or
async)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import shared.models  # noqa: F401  (registers every table on the metadata)
from shared.models.base import metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `racksmith migrate`, which supplies a connection")
run_with(connection)
