"""Alembic migrations: a fresh database reaches head, downgrades cleanly, and the models match."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
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


async def test_sqlite_ids_are_never_reused_and_rebuilding_keeps_referencing_rows(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ids.db'}")
    try:
        await migrate.upgrade(engine, "aaa8ffb4d49d")  # before the AUTOINCREMENT rebuild
        async with AsyncSession(engine) as session:
            # The node table as it was then (the model has grown columns since).
            await session.exec(
                text(
                    "INSERT INTO node (ip, port, url, fingerprint_changed, status, registration,"
                    " first_seen, last_seen, version) VALUES ('10.0.0.1', 443,"
                    " 'https://10.0.0.1', 0, 'discovered', 0, '2026-01-01', '2026-01-01', 1)"
                )
            )
            node = (await session.exec(select(Node.id))).one()
            server = Server(node_id=node, system_path="/redfish/v1/Systems/1", name="s")
            session.add(server)
            await session.flush()
            session.add(
                Processor(server_id=server.id, odata_id="/redfish/v1/Systems/1/Processors/1")
            )
            node_id, server_id = node, server.id
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


async def test_registered_nodes_trust_their_recorded_certificate_after_the_upgrade(
    tmp_path: Path,
) -> None:
    """Before 0011 the only certificate was the one last scanned: a registered node trusts it,
    unless discovery had flagged it as changed — then nothing is trusted until accepted."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trust.db'}")
    try:
        await migrate.upgrade(engine, "5c1e0f3a9b27")
        async with AsyncSession(engine) as session:
            for ip, changed, registered_at in (
                ("10.0.0.1", False, "2026-01-01"),
                ("10.0.0.2", True, "2026-01-01"),
                ("10.0.0.3", True, None),
            ):
                await session.exec(
                    text(
                        "INSERT INTO node (ip, port, url, fingerprint, fingerprint_changed, status,"
                        " registration, registered_at, first_seen, last_seen, version) VALUES"
                        " (:ip, 443, :url, :fingerprint, :changed, 'registered', 1,"
                        " :registered_at, '2026-01-01', '2026-01-01', 1)"
                    ).bindparams(
                        ip=ip,
                        url=f"https://{ip}",
                        fingerprint=ip[-1] * 64,
                        changed=changed,
                        registered_at=registered_at,
                    )
                )
            await session.commit()
        await migrate.upgrade(engine)
        async with AsyncSession(engine) as session:
            nodes = {n.ip: n for n in (await session.exec(select(Node))).all()}
        assert nodes["10.0.0.1"].trusted_fingerprint == "1" * 64
        assert nodes["10.0.0.1"].status == "registered"
        assert nodes["10.0.0.2"].trusted_fingerprint is None
        assert nodes["10.0.0.2"].status == "certificate_changed"
        assert "accept_certificate" in (nodes["10.0.0.2"].error or "")
        assert nodes["10.0.0.3"].trusted_fingerprint is None
        assert nodes["10.0.0.3"].status == "registered"
    finally:
        await engine.dispose()
