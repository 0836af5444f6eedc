"""Starting work (``commit_and_queue``): the start's events go out only once its command is
queued. A broker refusing the command undoes the start and its events — none reaches a
subscriber; a relay failing after the command was queued leaves the start standing, its events
to the next relay."""

from __future__ import annotations

import pytest
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import catalog
from shared.contracts.commands import Command, JobTickCommand
from shared.lifecycle.starting import commit_and_queue
from shared.messaging import outbox
from shared.messaging.publish import BrokerUnavailableError
from shared.models import Pool
from shared.platform.runtime import Runtime
from tests.discovery_helpers import events

pytestmark = pytest.mark.broker

# A tick for a job that does not exist: a jobs worker that meets it drops it as stale.
NO_JOB = 2**62


async def _start(runtime: Runtime, name: str) -> int:
    """A start as the lifecycles make them: a row and its event committed, then the command."""
    async with runtime.db.session() as session:
        pool = Pool(name=name)
        session.add(pool)
        await session.flush()
        assert pool.id is not None
        pool_id = pool.id
        started = catalog.pool_event(pool, "created")
        outbox.stage(session, started)

        async def revert(s: AsyncSession) -> None:
            await s.exec(delete(Pool).where(col(Pool.id) == pool_id))

        await commit_and_queue(
            session,
            runtime,
            JobTickCommand(job_id=NO_JOB, ticket=1),
            revert=revert,
            started=started,
        )
    return pool_id


async def test_a_refused_command_leaves_no_event_behind(
    runtime: Runtime, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[Command] = []

    async def refused(command: Command) -> None:
        queued.append(command)
        raise BrokerUnavailableError("no ack")

    monkeypatch.setattr(runtime.publisher, "command", refused)
    with pytest.raises(BrokerUnavailableError):
        await _start(runtime, f"refused-{unique}")
    monkeypatch.undo()
    assert len(queued) == 1
    async with runtime.db.session() as session:  # the start was undone
        left = await session.exec(select(Pool).where(col(Pool.name) == f"refused-{unique}"))
        assert left.all() == []
    created = await events(runtime, "racksmith.evt.pool.*.created")
    assert not [e for e in created if e["data"]["name"] == f"refused-{unique}"]


async def test_the_start_stands_when_only_its_relay_fails(
    runtime: Runtime, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(**_: object) -> None:
        raise BrokerUnavailableError("no ack")

    monkeypatch.setattr(runtime.outbox, "relay", down)
    pool_id = await _start(runtime, f"deferred-{unique}")
    monkeypatch.undo()
    async with runtime.db.session() as session:
        assert await session.get(Pool, pool_id) is not None
    # The next relay (here the helper's sweep) sends what the failed one left.
    assert [e["data"]["id"] for e in await events(runtime, f"racksmith.evt.pool.{pool_id}.*")] == [
        pool_id
    ]
