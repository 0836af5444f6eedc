"""A server's ``version`` (part of its events' ids) and the fields next to it are written by the
API (pool moves), the job engine and the inventory, each from its own transaction: a writer that
read the row before another committed must not write over that commit. Each test reads the
row in one session, commits a change from another, then lets the first write."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from services.api import membership
from shared.core.clock import utcnow
from shared.lifecycle import job as job_lifecycle
from shared.lifecycle.server import observe_power
from shared.models import Job, JobState, Pool, Server
from shared.platform.runtime import Runtime
from tests.pool_helpers import make_servers


async def _read(runtime: Runtime, server_id: int | None) -> Server:
    async with runtime.db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        return server


async def _power_changes_elsewhere(runtime: Runtime, server_id: int | None, state: str) -> None:
    async with runtime.db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        assert observe_power(session, server, state)
        await session.commit()


async def test_a_pool_removal_does_not_undo_a_power_change_committed_meanwhile(
    runtime: Runtime, unique: str
) -> None:
    async with runtime.db.session() as session:
        pool = Pool(name=f"versions-{unique}")
        session.add(pool)
        await session.commit()
    (server,) = await make_servers(runtime, f"ver-{unique}", 1, pool_id=pool.id)
    before = (await _read(runtime, server.id)).version
    async with runtime.db.session() as session:
        stale = (await session.exec(select(Server).where(col(Server.id) == server.id))).one()
        await _power_changes_elsewhere(runtime, server.id, "Off")
        await membership.unassign(session, [stale])
        await session.commit()
    after = await _read(runtime, server.id)
    assert after.resource_pool_id is None and after.power_state == "Off"
    # Two changes, two versions: the removal's event does not reuse the power change's version.
    assert after.version == before + 2


async def test_a_job_step_records_power_over_what_was_committed_meanwhile(
    runtime: Runtime, unique: str
) -> None:
    """The engine's copy of the server said On; meanwhile the inventory read Off and committed;
    the step reads On: the server ends On, with a version for each change."""
    (server,) = await make_servers(runtime, f"verjob-{unique}", 1)
    async with runtime.db.session() as session:
        job = Job(
            kind="power",
            state=JobState.running,
            step="await_power",
            server_id=server.id,
            active_server_id=server.id,
            lease_token="lease",
            lease_until=utcnow() + timedelta(seconds=60),
            deadline_at=utcnow() + timedelta(seconds=600),
        )
        session.add(job)
        await session.commit()
        job_id = job.id
    assert job_id is not None
    before = (await _read(runtime, server.id)).version
    async with runtime.db.session() as session:
        # A copy read before the other writer committed (as a PostgreSQL transaction may hold).
        held = await session.get(Server, server.id)
        assert held is not None and held.power_state == "On"
        await _power_changes_elsewhere(runtime, server.id, "Off")
        report = job_lifecycle.StepReport(
            outcome=job_lifecycle.Poll(1.0), data={}, power_state="On"
        )
        assert await job_lifecycle.advance(session, job_id, "lease", report) is not None
        await session.commit()
        del held
    after = await _read(runtime, server.id)
    assert after.power_state == "On"
    assert after.version == before + 2
