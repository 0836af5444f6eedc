"""Alembic migrations: a fresh database reaches head, downgrades cleanly, and the models match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.core.db import create_engine
from shared.models import Node, Processor, Server, metadata
from shared.platform import migrate


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


async def _insert(session: AsyncSession, model: Any, **values: object) -> int:
    """A row as an older schema has it: the model's defaults, only for the columns there are
    (today's model may have more)."""
    table = model.__table__
    row = model(**values).model_dump(exclude={"id"})
    columns = await session.run_sync(
        lambda s: {c["name"] for c in inspect(s.connection()).get_columns(table.name)}
    )
    result = await session.exec(
        table.insert().values(**{k: v for k, v in row.items() if k in columns})
    )
    return int(result.inserted_primary_key[0])


async def test_sqlite_ids_are_never_reused_and_rebuilding_keeps_referencing_rows(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ids.db'}")
    try:
        await migrate.upgrade(engine, "aaa8ffb4d49d")  # before the AUTOINCREMENT rebuild
        async with AsyncSession(engine) as session:
            # Rows as that schema had them: the models of today may have more columns.
            node_id = await _insert(session, Node, ip="10.0.0.1", port=443, url="https://x")
            server_id = await _insert(
                session, Server, node_id=node_id, system_path="/redfish/v1/Systems/1", name="s"
            )
            await _insert(
                session,
                Processor,
                server_id=server_id,
                odata_id="/redfish/v1/Systems/1/Processors/1",
            )
            await session.commit()
        await migrate.upgrade(engine)
        async with AsyncSession(engine) as session:
            # The rebuilt tables kept their rows and what references them (no cascade).
            assert len((await session.exec(select(Processor))).all()) == 1
            assert (await session.exec(select(Server.node_id))).one() == node_id
            await session.delete(await session.get(Server, server_id))
            await session.commit()
            again = Server(node_id=node_id, system_path="/redfish/v1/Systems/2", name="t")
            session.add(again)
            await session.flush()
            # SQLite without AUTOINCREMENT would hand out the deleted server's id again.
            assert again.id == (server_id or 0) + 1
    finally:
        await engine.dispose()
