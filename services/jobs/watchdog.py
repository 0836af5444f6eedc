"""The watchdog: nothing that waits stays stuck.

Every state that waits has a deadline: a job (``deadline_at``, and its step's
``step_deadline_at``), a scan run (``RACKSMITH_SCAN_DEADLINE_S`` after it started), a node's
registration (``RACKSMITH_REGISTER_DEADLINE_S`` after it was requested). The engine and the
workers end their own work on time; the watchdog ends it when they cannot — a worker that died
while the database was away, so that neither its work nor its error hook could record anything,
or a tick message that went missing (then the job is woken with a new one).

It runs in every jobs worker and in ``racksmith up``, so several may sweep at once: each change
goes through the entity's lifecycle function, which locks the row and checks it again, so
everything is ended once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.core.clock import utcnow
from shared.core.log import get_logger
from shared.lifecycle import job as job_lifecycle
from shared.lifecycle import node as node_lifecycle
from shared.lifecycle import scan_range as scan_range_lifecycle
from shared.messaging.publish import BrokerUnavailableError
from shared.models import Node, NodeStatus, ScanRange, ScanStatus
from shared.platform.runtime import Runtime

log = get_logger(__name__)


@dataclass
class Swept:
    jobs_failed: list[int] = field(default_factory=list)
    jobs_woken: list[int] = field(default_factory=list)
    scan_ranges_failed: list[int] = field(default_factory=list)
    nodes_failed: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.jobs_failed, self.jobs_woken, self.scan_ranges_failed, self.nodes_failed))


async def sweep(runtime: Runtime, now: datetime | None = None) -> Swept:
    now = now or utcnow()
    swept = Swept()
    await _jobs(runtime, now, swept)
    swept.scan_ranges_failed = await _fail_stuck(runtime, now, SCAN_RUNS)
    swept.nodes_failed = await _fail_stuck(runtime, now, REGISTRATIONS)
    if swept:
        log.warning("watchdog.swept", **vars(swept))
        try:
            await runtime.outbox.relay()
        except BrokerUnavailableError as exc:  # the outbox sweep delivers them later
            log.warning("watchdog.events_delayed", error=str(exc))
    return swept


async def _jobs(runtime: Runtime, now: datetime, swept: Swept) -> None:
    settings = runtime.settings
    # The engine gets its own chance first: it ends a job at a deadline itself (and may fall
    # back instead of failing), so the watchdog waits one step's length longer.
    grace = settings.job_tick_timeout_s
    # A tick is lost when it is this late: a dead worker's lease plus the redelivery after it.
    stalled = now - timedelta(seconds=settings.job_tick_timeout_s + settings.command_ack_wait_s)
    async with runtime.db.session() as session:
        candidates = await job_lifecycle.overdue(
            session, deadline_before=now - timedelta(seconds=grace), tick_before=stalled
        )
        await session.commit()
    for job_id in candidates:
        async with runtime.db.session() as session:
            expired = await job_lifecycle.expire(session, job_id, grace_s=grace)
            await session.commit()
        if expired:
            swept.jobs_failed.append(job_id)
            continue
        async with runtime.db.session() as session:
            try:
                if await job_lifecycle.wake(session, runtime, job_id, stalled_before=stalled):
                    swept.jobs_woken.append(job_id)
            except BrokerUnavailableError as exc:
                log.warning("watchdog.wake_failed", job=job_id, error=str(exc))


@dataclass(frozen=True)
class StuckRuns:
    """Work whose run (a scan run, a registration) can outlive its worker and its error hook."""

    what: str
    model: type[ScanRange] | type[Node]
    run: str  # the column numbering runs
    status: str  # the status that waits
    started: str  # when the run began
    deadline_setting: str
    worker: str
    # (session, id, run, reason) → the run was still in progress and is now failed
    fail: Callable[[AsyncSession, int, int, str], Awaitable[bool]]


SCAN_RUNS = StuckRuns(
    "The scan",
    ScanRange,
    "run",
    ScanStatus.scanning,
    "last_scan_started_at",
    "scan_deadline_s",
    "scanner",
    scan_range_lifecycle.fail,
)
REGISTRATIONS = StuckRuns(
    "Registration",
    Node,
    "registration",
    NodeStatus.registering,
    "registration_started_at",
    "register_deadline_s",
    "registrar",
    node_lifecycle.fail_current,
)


async def _fail_stuck(runtime: Runtime, now: datetime, runs: StuckRuns) -> list[int]:
    """Fail every run past its deadline, each in its own transaction, through the lifecycle's
    fail function (which locks the row and checks the run is still the one in progress)."""
    deadline: float = getattr(runtime.settings, runs.deadline_setting)
    model: Any = runs.model
    stuck = select(model.id, getattr(model, runs.run)).where(
        col(model.status) == runs.status,
        col(getattr(model, runs.started)) < now - timedelta(seconds=deadline),
    )
    async with runtime.db.session() as session:
        rows = (await session.exec(stuck)).all()
        await session.commit()
    reason = (
        f"{runs.what} did not finish within {deadline:g} s of its start "
        f"(RACKSMITH_{runs.deadline_setting.upper()}); the watchdog ended it. "
        f"Is a {runs.worker} worker running?"
    )
    failed = []
    for entity_id, run in rows:
        async with runtime.db.session() as session:
            if await runs.fail(session, entity_id, run, reason):
                failed.append(entity_id)
            await session.commit()
    return failed


async def watch_forever(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(runtime.settings.watchdog_interval_s)
        try:
            await sweep(runtime)
        except Exception as exc:  # keep watching: the database may be briefly away
            log.warning("watchdog.sweep_failed", error=str(exc))
