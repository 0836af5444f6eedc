"""A job's life: ``pending`` → ``running`` ⇄ ``waiting`` → ``completed`` | ``failed`` |
``cancelled``, and every event on the way.

Who calls what:
- the API creates jobs (``create``, one or many in one transaction with one pipelined publish),
  cancels (``request_cancel``) and retries them (``create`` with ``retry_of``);
- the jobs worker's engine claims a job for one step (``claim``), records a non-idempotent call's
  intent before making it (``record_intent``), and commits the step's outcome (``advance``);
- the watchdog fails jobs past their deadlines (``expire``) and wakes jobs whose tick message
  went missing (``wake``).

Concurrency rules, all enforced by conditional updates on the row:
- one active job per server: ``active_server_id`` is UNIQUE and set only while the job is active;
- one worker per job at a time: ``claim`` takes a lease (token + expiry) that ``record_intent``
  and ``advance`` require, so a step of a job that was cancelled, failed by the watchdog or
  claimed by another delivery after the lease ran out cannot commit;
- one driving message per job: a tick whose ``ticket`` is not the job's is stale and dropped.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, delete, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import catalog
from shared.contracts.commands import JobTickCommand
from shared.contracts.events import CloudEvent
from shared.core.clock import as_utc, utcnow
from shared.lifecycle import deployment
from shared.lifecycle.server import observe_power
from shared.lifecycle.starting import commit_and_queue
from shared.messaging import outbox
from shared.models import Job, JobState, Server
from shared.models.deployments import DEPLOYMENT
from shared.models.jobs import ACTIVE_STATES
from shared.observability import metrics
from shared.platform.runtime import Runtime

# Progress events of one job at most this often; the step and progress they would have shown
# go out with the next event (a later progress event, or the final one).
PROGRESS_EVENT_INTERVAL_S = 2.0
# A job keeps its newest messages; a long job polling a chatty BMC must not grow without bound.
MAX_MESSAGES = 100
DEADLINE_EXCEEDED = "deadline_exceeded"


def lock_name(job_id: int) -> str:
    """What ``server.locked_by`` says while the job holds the server."""
    return f"job/{job_id}"


def locking_job(locked_by: str | None) -> int | None:
    """The job id in a ``locked_by`` value, if a job holds the server."""
    if locked_by and locked_by.startswith("job/") and locked_by[4:].isdigit():
        return int(locked_by[4:])
    return None


def message(
    text: str,
    message_id: str | None = None,
    *,
    code: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """A job message; ``code``: the error code of the failure or retry it reports."""
    note = {"time": (at or utcnow()).isoformat(), "text": text, "message_id": message_id}
    return note if code is None else note | {"code": code}


def _append(job: Job, notes: Sequence[dict[str, Any]]) -> None:
    if notes:
        job.messages = [*job.messages, *notes][-MAX_MESSAGES:]


# --- creating --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewJob:
    server: Server
    kind: str
    params: dict[str, Any]
    created_by: int | None
    deadline_s: float
    retry_of: Job | None = None


class ServersBusy(Exception):
    """Some servers already have an active job; nothing was created."""

    def __init__(self, active: dict[int, int]) -> None:
        super().__init__(f"servers with an active job: {active}")
        self.active = active  # server id → its active job's id


class AlreadyRetried(Exception):
    def __init__(self, job_id: int, retry_id: int) -> None:
        super().__init__(f"job {job_id} was already retried as job {retry_id}")
        self.job_id = job_id
        self.retry_id = retry_id


async def active_jobs(session: AsyncSession, server_ids: Sequence[int]) -> dict[int, int]:
    """Server id → id of its active job, for the servers that have one."""
    rows = (
        await session.exec(
            select(Job.active_server_id, Job.id).where(col(Job.active_server_id).in_(server_ids))
        )
    ).all()
    return {server: job for server, job in rows if server is not None and job is not None}


async def create(session: AsyncSession, runtime: Runtime, specs: Sequence[NewJob]) -> list[Job]:
    """Create the jobs, lock their servers and queue their first ticks — all or nothing.

    Raises `ServersBusy` naming each server's active job (or `AlreadyRetried`) and writes
    nothing; a broker that refuses the ticks undoes everything (``BrokerUnavailableError``).
    """
    now = utcnow()
    jobs = [
        Job(
            kind=spec.kind,
            server_id=spec.server.id,
            active_server_id=spec.server.id,
            created_by_id=spec.created_by,
            params=spec.params,
            deadline_at=now + timedelta(seconds=spec.deadline_s),
            attempts=spec.retry_of.attempts + 1 if spec.retry_of else 1,
            retry_of_id=spec.retry_of.id if spec.retry_of else None,
            created_at=now,
            updated_at=now,
            next_tick_at=now,
            messages=[message(_created_note(spec), at=now)],
        )
        for spec in specs
    ]
    # Read before the flush: a failed flush's rollback expires the servers' attributes.
    server_ids = [spec.server.id for spec in specs if spec.server.id is not None]
    retried = [spec.retry_of.id for spec in specs if spec.retry_of and spec.retry_of.id]
    session.add_all(jobs)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        await _explain_conflict(session, server_ids, retried)
        raise
    events: list[CloudEvent] = []
    for job, spec in zip(jobs, specs, strict=True):
        assert job.id is not None
        spec.server.locked_by = lock_name(job.id)
        session.add(spec.server)
        event = catalog.job_event(job, "created", resource_pool=spec.server.resource_pool_id)
        outbox.stage(session, event)
        events.append(event)
    ids = [job.id for job in jobs]

    async def revert(s: AsyncSession) -> None:
        for job_id in ids:
            assert job_id is not None
            await s.exec(
                update(Server)
                .where(col(Server.locked_by) == lock_name(job_id))
                .values(locked_by=None)
            )
        await s.exec(delete(Job).where(col(Job.id).in_(ids)))

    ticks = [JobTickCommand(job_id=job_id, ticket=1) for job_id in ids if job_id is not None]
    kinds = [job.kind for job in jobs]
    await commit_and_queue(session, runtime, ticks, revert=revert, started=events)
    # Counted once queued: a start the broker refused was undone.
    _count(kinds, JobState.pending)
    return jobs


def _created_note(spec: NewJob) -> str:
    if spec.retry_of is not None:
        return f"Retry of job {spec.retry_of.id} (attempt {spec.retry_of.attempts + 1})."
    return "Job accepted."


async def _explain_conflict(
    session: AsyncSession, server_ids: Sequence[int], retried: Sequence[int]
) -> None:
    for job_id in retried:
        retry = (await session.exec(select(Job.id).where(col(Job.retry_of_id) == job_id))).first()
        if retry is not None:
            raise AlreadyRetried(job_id, retry)
    active = await active_jobs(session, server_ids)
    if active:
        raise ServersBusy(active)


# --- the engine's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stale:
    """The tick is not (or no longer) the one driving an active job: drop it."""


@dataclass(frozen=True)
class Busy:
    """Another delivery holds the job; try again when its lease runs out."""

    retry_in: float


@dataclass(frozen=True)
class Ended:
    """The claim itself ended the job (cancelled before a step, past its deadline)."""


@dataclass(frozen=True)
class Claimed:
    job: Job  # as the claim left it (the caller commits, then uses it detached)
    token: str
    # An earlier delivery's lease was left behind: it died (or outlived its lease) mid-step,
    # and this delivery resumes the step.
    resumed: bool = False


ClaimResult = Stale | Busy | Ended | Claimed


def _active(job_id: int) -> list[ColumnElement[bool]]:
    return [col(Job.id) == job_id, col(Job.state).in_(ACTIVE_STATES)]


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(col(Job.lease_until).is_(None), col(Job.lease_until) < now)


async def _touch(session: AsyncSession, job_id: int) -> Job | None:
    """The job row, locked: writing it first takes the row lock (PostgreSQL) or the write lock
    (SQLite), so whoever reads it next waits for this transaction."""
    await session.exec(update(Job).where(col(Job.id) == job_id).values(version=Job.version))
    return await session.get(Job, job_id, populate_existing=True)


async def _server(session: AsyncSession, job: Job) -> Server | None:
    """The job's server, locked (written first, as ``_touch`` does the job) and read afresh: the
    power state, lock and version this transaction writes start from what the API (a pool
    move) or an inventory committed, never from a copy read before they did."""
    if job.server_id is None:
        return None
    await session.exec(
        update(Server).where(col(Server.id) == job.server_id).values(version=Server.version)
    )
    return await session.get(Server, job.server_id, populate_existing=True)


async def claim(
    session: AsyncSession,
    job_id: int,
    ticket: int,
    *,
    first_steps: Mapping[str, str],
    lease_s: float,
    cleanups: Mapping[str, Cleanup] | None = None,
) -> ClaimResult:
    """Take the job for one step. Commits nothing: the caller commits before doing the step.

    A pending job becomes ``running`` at its kind's first step; a cancel that arrived while no
    step ran, or a deadline that passed, ends the job here without touching its BMC — or, for a
    kind with a cleanup step (``cleanups``), moves it to that step, which ends it once it ran.
    """
    now = utcnow()
    token = secrets.token_hex(8)
    left = (await session.exec(select(Job.lease_token).where(col(Job.id) == job_id))).first()
    taken = await session.exec(
        update(Job)
        .where(*_active(job_id), col(Job.ticket) == ticket, _lease_free(now))
        .values(
            lease_token=token,
            lease_until=now + timedelta(seconds=lease_s),
            next_tick_at=now + timedelta(seconds=lease_s),
            ticks=Job.ticks + 1,
        )
    )
    job = await session.get(Job, job_id, populate_existing=True)
    if taken.rowcount == 0:
        if job is None or job.ticket != ticket or job.state not in ACTIVE_STATES:
            return Stale()
        until = job.lease_until or now
        return Busy(max(0.5, (until - now).total_seconds()))
    assert job is not None
    server = await _server(session, job)
    if server is None:
        _finish(session, job, None, JobState.failed, "server_removed", "The server was removed.")
        return Ended()
    cleanup = (cleanups or {}).get(job.kind)
    ending = ending_of(job)
    deadline = job.deadline_at
    expired = deadline is not None and deadline <= now
    if ending is not None and expired:
        _end_as(session, job, server, ending, "The cleanup did not finish in its time.")
        return Ended()
    if ending is None and (job.cancel_requested or expired):
        state, code, reason = JobState.cancelled, None, cast(str | None, None)
        if not job.cancel_requested and deadline is not None:
            state, code = JobState.failed, DEADLINE_EXCEEDED
            reason = f"The job did not finish by its deadline ({deadline.isoformat()})."
        if cleanup is None or job.state == JobState.pending:
            _finish(session, job, server, state, code, reason)
            return Ended()
        begin_cleanup(job, cleanup, Ending(state, code, reason), now)
        _stage(session, job, catalog.job_event(_bump(job), "progress", resource_pool=_pool(server)))
    if job.state == JobState.pending:
        job.state = JobState.running
        job.started_at = now
        metrics.on_commit(session, lambda: _count([job.kind], JobState.running))
        _enter_step(job, Next(first_steps.get(job.kind, "")), now)
        _stage(session, job, catalog.job_event(_bump(job), "started", resource_pool=_pool(server)))
    # Loaded in full by the refresh above, so it stays readable once the session is gone.
    return Claimed(job=job, token=token, resumed=left is not None)


class LeaseLost(Exception):
    """The job moved on without this delivery (ended, cancelled, claimed by another)."""


class CancelRequested(Exception):
    """A cancel arrived before the step started its BMC call: the call is not made."""


async def record_intent(
    session: AsyncSession, job_id: int, token: str, intent: dict[str, Any]
) -> None:
    """Write what a step is about to ask the BMC, before asking (the caller commits)."""
    # A cleanup step runs because of the cancel: its calls are made all the same.
    cleaning = intent.get("cleanup_step")
    wanted = or_(col(Job.cancel_requested).is_(False), col(Job.step) == cleaning)
    written = await session.exec(
        update(Job)
        .where(*_active(job_id), col(Job.lease_token) == token, wanted)
        .values(intent=intent | {"at": utcnow().isoformat()}, intent_result=None)
    )
    if written.rowcount == 0:
        job = await session.get(Job, job_id)
        if job is not None and job.lease_token == token and job.cancel_requested:
            raise CancelRequested()
        raise LeaseLost()


# Outcomes of one step, as the job kinds return them.


@dataclass(frozen=True)
class Next:
    """Go on to ``step`` after ``after`` seconds. With ``waiting_for`` the job is ``waiting``
    (for something outside Racksmith); ``deadline_s`` bounds the step, and ``expiry_code`` is
    the error_code the job fails with when the step is not done by then."""

    step: str
    after: float = 0.0
    waiting_for: str | None = None
    deadline_s: float | None = None
    expiry_code: str | None = None


@dataclass(frozen=True)
class Poll:
    """Not done yet: run the same step again after ``after`` seconds."""

    after: float


@dataclass(frozen=True)
class Retry:
    """The step failed in a way that may pass (a busy BMC, a 409): try it again after ``after``
    seconds, at most ``max_attempts`` times in this step (None: until the step's deadline),
    then fail with ``code``."""

    code: str
    reason: str
    after: float
    max_attempts: int | None


@dataclass(frozen=True)
class Done:
    text: str


@dataclass(frozen=True)
class Fail:
    code: str
    reason: str


Outcome = Next | Poll | Retry | Done | Fail


@dataclass
class StepReport:
    """What a step leaves behind besides its outcome (the engine fills it from the step)."""

    outcome: Outcome
    data: dict[str, Any]
    notes: list[dict[str, Any]] = field(default_factory=list)
    progress: int | None = None
    power_state: str | None = None
    intent_result: dict[str, Any] | None = None


async def advance(
    session: AsyncSession,
    job_id: int,
    token: str,
    report: StepReport,
    cleanup: Cleanup | None = None,
) -> float | None:
    """Commit a step's outcome; returns the seconds until the next tick, or None when the job
    ended (or moved on without this delivery). The caller commits.

    With ``cleanup`` (the kind's), a cancel at the step boundary moves the job to the cleanup
    step instead of ending it; once the job is cleaning up, ``Done`` or ``Fail`` end it as the
    cleanup was started for (cancelled, or failed with the first failure's code)."""
    now = utcnow()
    job = await _touch(session, job_id)
    if job is None or job.lease_token != token or job.state not in ACTIVE_STATES:
        return None
    server = await _server(session, job)
    job.data = report.data
    _append(job, report.notes)
    if report.intent_result is not None:
        job.intent_result = report.intent_result | {"at": now.isoformat()}
    if server is not None and report.power_state is not None:
        observe_power(session, server, report.power_state)
    before = (job.step, job.progress, job.state, job.waiting_for)
    if report.progress is not None:
        job.progress = report.progress
    outcome = report.outcome
    if isinstance(outcome, Retry):
        job.step_attempts += 1
        _append(job, [message(outcome.reason, code=outcome.code)])
        if outcome.max_attempts is not None and job.step_attempts >= outcome.max_attempts:
            outcome = Fail(
                outcome.code, f"{outcome.reason} (gave up after {job.step_attempts} attempts)"
            )
    if isinstance(outcome, (Poll, Retry)) and _step_expired(job, now):
        outcome = Fail(
            job.step_expiry_code or DEADLINE_EXCEEDED,
            f"Step {job.step} did not finish by its deadline "
            f"({job.step_deadline_at.isoformat() if job.step_deadline_at else ''}).",
        )
    ending = ending_of(job)
    if ending is not None and isinstance(outcome, (Done, Fail)):
        text = outcome.text if isinstance(outcome, Done) else f"Cleanup: {outcome.reason}"
        _end_as(session, job, server, ending, text)
        return None
    if isinstance(outcome, Done):
        _append(job, [message(outcome.text)])
        _finish(session, job, server, JobState.completed)
        return None
    if isinstance(outcome, Fail):
        _finish(session, job, server, JobState.failed, outcome.code, outcome.reason)
        return None
    if job.cancel_requested and ending is None and cleanup is not None:
        begin_cleanup(job, cleanup, Ending(JobState.cancelled, None, None), now)
        outcome = Poll(0.0)
    elif job.cancel_requested and ending is None:
        # The step boundary: what the step started is recorded, nothing new starts.
        _finish(session, job, server, JobState.cancelled)
        return None
    if isinstance(outcome, Next):
        _enter_step(job, outcome, now)
        if cleanup is not None and outcome.step == cleanup.step and ending is not None:
            # A failure the kind cleans up after: the cleanup gets its time past the deadline.
            until = now + timedelta(seconds=cleanup.timeout_s)
            if job.deadline_at is None or as_utc(job.deadline_at) < until:
                job.deadline_at = until
    delay = _bounded(job, outcome.after, now)
    job.lease_token = None
    job.lease_until = None
    job.next_tick_at = now + timedelta(seconds=delay)
    job.updated_at = now
    session.add(job)
    _announce(session, job, server, before, now)
    return delay


@dataclass(frozen=True)
class Cleanup:
    """A kind's cleanup: the step that undoes what a job may have left on its server (mounted
    media, a boot override) when it is cancelled or fails, and how long that may take."""

    step: str
    timeout_s: float


@dataclass(frozen=True)
class Ending:
    """How a job that is cleaning up will end once the cleanup ran."""

    state: JobState
    code: str | None
    reason: str | None


ENDING = "ending"


def ending_of(job: Job) -> Ending | None:
    """How the job ends once its cleanup ran; None while it is not cleaning up."""
    raw = job.data.get(ENDING)
    if not isinstance(raw, dict):
        return None
    return Ending(JobState(raw["state"]), raw.get("code"), raw.get("reason"))


def begin_cleanup(job: Job, cleanup: Cleanup, ending: Ending, now: datetime) -> None:
    """Move the job to its cleanup step, to end as ``ending`` says once it ran; the job gets
    the cleanup's time on top of its deadline, as the cleanup is what the deadline asked for.
    A kind's step calls this for its own failures that need cleaning up."""
    job.data = job.data | {
        ENDING: {"state": ending.state.value, "code": ending.code, "reason": ending.reason}
    }
    if ending.reason is not None:
        _append(job, [message(f"{ending.reason} Cleaning up.", code=ending.code)])
    else:
        _append(job, [message("Cleaning up before the job ends.")])
    _enter_step(job, Next(cleanup.step, deadline_s=cleanup.timeout_s), now)
    job.deadline_at = now + timedelta(seconds=cleanup.timeout_s)


def fail_with_cleanup(data: dict[str, Any], cleanup: Cleanup, code: str, reason: str) -> Next:
    """A kind's step outcome for a failure that must be cleaned up after: the job goes to the
    cleanup step and then fails with ``code`` and ``reason``."""
    data[ENDING] = {"state": JobState.failed.value, "code": code, "reason": reason}
    return Next(cleanup.step, deadline_s=cleanup.timeout_s)


def _end_as(
    session: AsyncSession, job: Job, server: Server | None, ending: Ending, text: str
) -> None:
    _append(job, [message(text)])
    _finish(session, job, server, ending.state, ending.code, ending.reason)


def _step_expired(job: Job, now: datetime) -> bool:
    return job.step_deadline_at is not None and job.step_deadline_at <= now


def _bounded(job: Job, delay: float, now: datetime) -> float:
    """No later than the moment a deadline passes, so an overdue job ends promptly."""
    for deadline in (job.step_deadline_at, job.deadline_at):
        if deadline is not None:
            delay = min(delay, max(0.0, (deadline - now).total_seconds()) + 0.1)
    return max(0.0, delay)


def _enter_step(job: Job, step: Next, now: datetime) -> None:
    job.step = step.step
    job.step_started_at = now
    job.step_deadline_at = (
        now + timedelta(seconds=step.deadline_s) if step.deadline_s is not None else None
    )
    job.step_expiry_code = step.expiry_code
    job.step_attempts = 0
    job.intent = None
    job.intent_result = None
    job.waiting_for = step.waiting_for
    job.state = JobState.waiting if step.waiting_for else JobState.running


def _announce(
    session: AsyncSession,
    job: Job,
    server: Server | None,
    before: tuple[Any, ...],
    now: datetime,
) -> None:
    step, progress, state, waiting_for = before
    if job.state == JobState.waiting and (
        state != JobState.waiting or waiting_for != job.waiting_for
    ):
        _stage(session, job, catalog.job_event(_bump(job), "waiting", resource_pool=_pool(server)))
        job.progress_event_at = now
        job.progress_pending = False  # the waiting event shows the step and progress too
        return
    moved = (step, progress, state) != (job.step, job.progress, job.state)
    due = job.progress_event_at is None or (
        (now - job.progress_event_at).total_seconds() >= PROGRESS_EVENT_INTERVAL_S
    )
    if (moved or job.progress_pending) and due:
        _stage(session, job, catalog.job_event(_bump(job), "progress", resource_pool=_pool(server)))
        job.progress_event_at = now
        job.progress_pending = False
    elif moved:
        job.progress_pending = True


def _bump(job: Job) -> Job:
    """The job with its version moved on, for the event about to be built of it."""
    job.version += 1
    job.updated_at = utcnow()
    return job


def _pool(server: Server | None) -> int | None:
    return server.resource_pool_id if server is not None else None


def _stage(session: AsyncSession, job: Job, event: CloudEvent) -> None:
    session.add(job)
    outbox.stage(session, event)


def _finish(
    session: AsyncSession,
    job: Job,
    server: Server | None,
    state: JobState,
    code: str | None = None,
    reason: str | None = None,
) -> None:
    """End the job: final state, the server unlocked and free for the next job, the event."""
    assert job.id is not None
    now = utcnow()
    _observe_end(session, job, state, code, now)
    job.state = state
    job.finished_at = now
    job.error_code = code
    job.error = reason
    job.active_server_id = None
    job.lease_token = None
    job.lease_until = None
    job.next_tick_at = None
    job.waiting_for = None
    job.step_deadline_at = None
    if reason is not None:
        _append(job, [message(reason, code=code)])
    if server is not None and job.kind == DEPLOYMENT:
        deployment.ended(session, server, job, state)
    if server is not None and server.locked_by == lock_name(job.id):
        server.locked_by = None
        server.updated_at = now
        session.add(server)
    pool = _pool(server)
    if state is JobState.completed:
        event = catalog.job_event(_bump(job), "completed", resource_pool=pool)
    elif state is JobState.failed:
        event = catalog.job_event(_bump(job), "failed", resource_pool=pool)
    else:
        event = catalog.job_event(_bump(job), "cancelled", resource_pool=pool)
    _stage(session, job, event)


def _count(kinds: Sequence[str], state: JobState) -> None:
    for kind in kinds:
        metrics.jobs_total(metrics.job_kind_label(kind), state.value).inc()


def _observe_end(
    session: AsyncSession, job: Job, state: JobState, code: str | None, now: datetime
) -> None:
    """The job's end in the metrics, once its transaction commits; before ``_finish`` clears
    the step's deadline, which tells whether a failure is the step's deadline passing."""
    kind = metrics.job_kind_label(job.kind)
    step_expired = code == job.step_expiry_code and _step_expired(job, now)
    deadline = state is JobState.failed and (code == DEADLINE_EXCEEDED or step_expired)
    duration = max(0.0, (now - as_utc(job.created_at)).total_seconds())

    def record() -> None:
        _count([job.kind], state)
        metrics.job_duration(kind, state.value).observe(duration)
        if deadline:
            metrics.job_deadline_failures(kind).inc()

    metrics.on_commit(session, record)


# --- the API's and the watchdog's side -------------------------------------------------------


class NotActive(Exception):
    """The job already ended."""


async def request_cancel(session: AsyncSession, job_id: int, by: int | None) -> bool:
    """Cancel the job at the request of user ``by`` (id): at once if no worker has taken it up
    yet (True), else at its next step boundary (False; the caller wakes it so that comes soon).
    The caller commits."""
    job = await _touch(session, job_id)
    if job is None or job.state not in ACTIVE_STATES:
        raise NotActive()
    # Every member of the server's pools reads the messages: the user's id (as `created_by`
    # shows it), never a username, which only superusers may look up.
    _append(job, [message(f"Cancel requested by user {by}.")])
    if job.state == JobState.pending and job.lease_token is None:
        _finish(session, job, await _server(session, job), JobState.cancelled)
        return True
    job.cancel_requested = True
    job.updated_at = utcnow()
    session.add(job)
    return False


async def wake(
    session: AsyncSession, runtime: Runtime, job_id: int, *, stalled_before: datetime | None = None
) -> bool:
    """Drive the job with a new tick message now (the current one is dropped when it comes
    back). False if the job is no longer active — or, with ``stalled_before``, if its tick was
    due after that or a worker holds it. A refused publish undoes the new ticket and raises
    ``BrokerUnavailableError`` (the old message keeps driving the job)."""
    conditions = _active(job_id)
    if stalled_before is not None:
        conditions += [col(Job.next_tick_at) < stalled_before, _lease_free(utcnow())]
    bumped = await session.exec(
        update(Job).where(*conditions).values(ticket=Job.ticket + 1, next_tick_at=utcnow())
    )
    if bumped.rowcount == 0:
        await session.commit()
        return False
    ticket = (await session.exec(select(Job.ticket).where(col(Job.id) == job_id))).one()

    async def revert(s: AsyncSession) -> None:
        await s.exec(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.ticket) == ticket)
            .values(ticket=ticket - 1)
        )

    await commit_and_queue(
        session, runtime, JobTickCommand(job_id=job_id, ticket=ticket), revert=revert
    )
    return True


async def expire(session: AsyncSession, job_id: int, *, grace_s: float) -> bool:
    """Fail the job if it is past its deadline or its step's by more than ``grace_s`` (the
    engine's own chance to act on it); the watchdog's path. The caller commits."""
    now = utcnow()
    cutoff = now - timedelta(seconds=grace_s)
    job = await _touch(session, job_id)
    if job is None or job.state not in ACTIVE_STATES:
        return False
    server = await _server(session, job)
    if job.deadline_at is not None and job.deadline_at < cutoff:
        _finish(
            session,
            job,
            server,
            JobState.failed,
            DEADLINE_EXCEEDED,
            f"The job did not finish by its deadline ({job.deadline_at.isoformat()}); "
            "the watchdog ended it.",
        )
        return True
    if job.step_deadline_at is not None and job.step_deadline_at < cutoff:
        _finish(
            session,
            job,
            server,
            JobState.failed,
            job.step_expiry_code or DEADLINE_EXCEEDED,
            f"Step {job.step} did not finish by its deadline "
            f"({job.step_deadline_at.isoformat()}); the watchdog ended the job.",
        )
        return True
    return False


async def overdue(
    session: AsyncSession, *, deadline_before: datetime, tick_before: datetime
) -> list[int]:
    """Active jobs the watchdog must look at: past a deadline, or whose tick is long overdue
    (its message was lost)."""
    rows = await session.exec(
        select(Job.id).where(
            col(Job.state).in_(ACTIVE_STATES),
            or_(
                col(Job.deadline_at) < deadline_before,
                col(Job.step_deadline_at) < deadline_before,
                col(Job.next_tick_at) < tick_before,
            ),
        )
    )
    return [job_id for job_id in rows.all() if job_id is not None]
