"""Alembic migrations: a fresh database reaches head, downgrades cleanly, and the models match."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.core.db import create_engine
from shared.models import Group, Node, Processor, Server, User, metadata
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


SEARCH_TABLE = re.compile(r"^(server|user)_search(_(data|idx|content|docsize|config))?$")


async def test_models_and_migrations_agree(runtime: object, database_url: str) -> None:
    """A model change without a migration (or the reverse) fails here, on SQLite and PostgreSQL."""
    engine = create_engine(database_url)

    def _diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
        # Search indexes live in migrations, not in the models: PostgreSQL's trigram indexes,
        # SQLite's FTS5 tables (and the tables FTS5 keeps them in).
        return [
            d
            for d in diffs
            if not (d[0] == "remove_index" and d[1].name.endswith("_trgm"))
            and not (d[0] == "remove_table" and SEARCH_TABLE.match(d[1].name))
        ]

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def _sql(engine: AsyncEngine, *statements: str) -> list[Any]:
    """Run raw SQL (models follow the newest schema, the database may be older); the rows of the
    last statement."""
    async with engine.begin() as conn:
        result = None
        for statement in statements:
            result = await conn.execute(text(statement))
        assert result is not None
        return list(result.all()) if result.returns_rows else []


async def test_sqlite_ids_are_never_reused_and_rebuilding_keeps_referencing_rows(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ids.db'}")
    try:
        await migrate.upgrade(engine, "aaa8ffb4d49d")  # before the AUTOINCREMENT rebuild
        await _sql(
            engine,
            "INSERT INTO node (id, ip, port, url, fingerprint_changed, status, first_seen,"
            " last_seen, version) VALUES (1, '10.0.0.1', 443, 'https://10.0.0.1', 0,"
            " 'discovered', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)",
            "INSERT INTO server (id, node_id, system_path, name, created_at, updated_at, version)"
            " VALUES (1, 1, '/redfish/v1/Systems/1', 's', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)",
            "INSERT INTO processor (server_id, odata_id)"
            " VALUES (1, '/redfish/v1/Systems/1/Processors/1')",
        )
        await migrate.upgrade(engine)
        async with AsyncSession(engine) as session:
            # The rebuilt tables kept their rows and what references them (no cascade).
            assert len((await session.exec(select(Processor))).all()) == 1
            assert (await session.exec(select(Server.node_id))).one() == 1
            await session.delete(await session.get(Server, 1))
            await session.commit()
            again = Server(node_id=1, system_path="/redfish/v1/Systems/2", name="t")
            session.add(again)
            await session.flush()
            # SQLite without AUTOINCREMENT would hand out the deleted server's id again.
            assert again.id == 2
    finally:
        await engine.dispose()


async def test_sqlite_user_and_group_ids_are_never_reused(tmp_path: Path) -> None:
    """A deleted user's tokens name its id: a new account must never get it (issue 16)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}")
    try:
        await migrate.upgrade(engine, "5c1e0f3a9b27")  # before user and group were rebuilt
        await _sql(
            engine,
            "INSERT INTO \"group\" (id, name) VALUES (1, 'ops')",
            'INSERT INTO "user" (id, username, email, is_superuser, is_active, password_hash,'
            " date_joined) VALUES (1, 'a', '', 0, 1, 'x', CURRENT_TIMESTAMP),"
            " (2, 'b', '', 0, 1, 'x', CURRENT_TIMESTAMP)",
            "INSERT INTO group_membership (user_id, group_id) VALUES (2, 1)",
        )
        await migrate.upgrade(engine)
        # The rebuild kept the members (no cascade from dropping the old tables).
        assert await _sql(engine, "SELECT user_id, group_id FROM group_membership") == [(2, 1)]
        assert await _sql(engine, 'SELECT token_version FROM "user" ORDER BY id') == [(1,), (1,)]
        async with AsyncSession(engine) as session:
            await session.delete(await session.get(User, 2))
            await session.delete(await session.get(Group, 1))
            await session.commit()
            user = User(username="c", password_hash="x", is_superuser=True)
            group = Group(name="ops2")
            session.add_all([user, group])
            await session.flush()
            assert (user.id, group.id) == (3, 2)
    finally:
        await engine.dispose()


async def test_registered_nodes_trust_their_recorded_certificate_after_the_upgrade(
    tmp_path: Path,
) -> None:
    """Before 0012 the only certificate was the one last scanned: a registered node trusts it,
    unless discovery had flagged it as changed — then nothing is trusted until accepted."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trust.db'}")
    try:
        await migrate.upgrade(engine, "8cb96bfe893a")  # 0011, before trusted certificates
        await _sql(
            engine,
            "INSERT INTO node (ip, port, url, fingerprint, fingerprint_changed, status,"
            " registration, registered_at, first_seen, last_seen, version) VALUES"
            " ('10.0.0.1', 443, 'https://10.0.0.1', 'fp1', 0, 'registered', 1,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1),"
            " ('10.0.0.2', 443, 'https://10.0.0.2', 'fp2', 1, 'registered', 1,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1),"
            " ('10.0.0.3', 443, 'https://10.0.0.3', 'fp3', 1, 'registered', 1,"
            " NULL, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)",
        )
        await migrate.upgrade(engine)
        async with AsyncSession(engine) as session:
            nodes = {n.ip: n for n in (await session.exec(select(Node))).all()}
        assert nodes["10.0.0.1"].trusted_fingerprint == "fp1"
        assert nodes["10.0.0.1"].status == "registered"
        assert nodes["10.0.0.2"].trusted_fingerprint is None
        assert nodes["10.0.0.2"].status == "certificate_changed"
        assert "accept_certificate" in (nodes["10.0.0.2"].error or "")
        assert nodes["10.0.0.3"].trusted_fingerprint is None
        assert nodes["10.0.0.3"].status == "registered"
    finally:
        await engine.dispose()
