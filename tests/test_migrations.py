"""Alembic migrations: a fresh database reaches head, downgrades cleanly, and the models match."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from shared import migrate
from shared.db import create_engine
from shared.models import metadata


async def test_fresh_database_round_trip(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        assert not await migrate.is_current(engine)
        await migrate.upgrade(engine)
        assert await migrate.is_current(engine)
        await migrate.upgrade(engine)  # idempotent
        await migrate.downgrade(engine, "base")
        assert not await migrate.is_current(engine)
        await migrate.upgrade(engine)
        assert await migrate.is_current(engine)
    finally:
        await engine.dispose()


async def test_models_and_migrations_agree(runtime: object, database_url: str) -> None:
    """A model change without a migration (or the reverse) fails here, on SQLite and PostgreSQL."""
    engine = create_engine(database_url)

    def _diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
        # PostgreSQL-only trigram indexes live in migrations, not in the models.
        return [d for d in diffs if not (d[0] == "remove_index" and d[1].name.endswith("_trgm"))]

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
