"""Progress events of a job are rate-limited: a poll that changes nothing says nothing, changes
within ``PROGRESS_EVENT_INTERVAL_S`` of the last event wait, and a change that waited goes out
once the interval has passed. The interval's passing is simulated by moving the time of the last
event back, not by waiting."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, update

from shared.core.clock import utcnow
from shared.lifecycle import job as job_lifecycle
from shared.models import Job, JobState
from shared.platform.runtime import Runtime
from tests.discovery_helpers import events
from tests.pool_helpers import make_servers


async def _job(runtime: Runtime, tag: str) -> int:
    (server,) = await make_servers(runtime, tag, 1)
    async with runtime.db.session() as session:
        job = Job(
            kind="power",
            state=JobState.running,
            step="await_power",
            server_id=server.id,
            active_server_id=server.id,
            deadline_at=utcnow() + timedelta(seconds=600),
        )
        session.add(job)
        await session.commit()
        assert job.id is not None
        return job.id


async def _step(runtime: Runtime, job_id: int, progress: int | None) -> None:
    """One delivery's outcome: not done yet, with ``progress`` (None: unknown this time)."""
    async with runtime.db.session() as session:
        await session.exec(update(Job).where(col(Job.id) == job_id).values(lease_token="lease"))
        report = job_lifecycle.StepReport(
            outcome=job_lifecycle.Poll(0.2), data={}, progress=progress
        )
        assert await job_lifecycle.advance(session, job_id, "lease", report) is not None
        await session.commit()


async def _interval_passes(runtime: Runtime, job_id: int) -> None:
    async with runtime.db.session() as session:
        earlier = utcnow() - timedelta(seconds=job_lifecycle.PROGRESS_EVENT_INTERVAL_S + 1)
        await session.exec(
            update(Job).where(col(Job.id) == job_id).values(progress_event_at=earlier)
        )
        await session.commit()


async def _progress_events(runtime: Runtime, job_id: int) -> list[int | None]:
    found = await events(runtime, f"racksmith.evt.job.{job_id}.progress")
    return [e["data"]["progress"] for e in found]


async def test_progress_events_are_rate_limited(runtime: Runtime, unique: str) -> None:
    job_id = await _job(runtime, f"progress-{unique}")
    await _step(runtime, job_id, 10)  # the first change goes out at once
    for progress in (20, 30, 40):  # changes within the interval wait
        await _step(runtime, job_id, progress)
    for _ in range(5):  # polls that change nothing
        await _step(runtime, job_id, None)
    assert await _progress_events(runtime, job_id) == [10]
    await _interval_passes(runtime, job_id)
    await _step(runtime, job_id, None)  # the change that waited goes out, as it is now
    assert await _progress_events(runtime, job_id) == [10, 40]
    await _interval_passes(runtime, job_id)
    for _ in range(3):  # nothing new to say, however long it has been
        await _step(runtime, job_id, None)
    assert await _progress_events(runtime, job_id) == [10, 40]
