"""The job engine: one delivery of a job's tick message = one step of the job.

A tick (1) claims the job in a short transaction (lease, stale-ticket check, a cancel or a
deadline that ends it before any BMC call), (2) runs the current step of the job's kind with no
transaction open, (3) commits the step's outcome, and (4) asks the router to deliver the same
message again when the next step is due (`Reschedule`) — a waiting job holds no message and no
worker. A kind is a set of named steps; each step does one idempotent thing or one look at the
BMC and says what comes next (`shared.lifecycle.job`: `Next`, `Poll`, `Retry`, `Done`, `Fail`).

A step that makes a non-idempotent BMC call records its intent first (`StepContext.intend`,
committed before the call) and what the call started after (`StepContext.started`, committed
with the outcome). A worker killed in between leaves the intent without a result; the next
delivery sees it (`StepContext.unsettled_intent`) and looks at the BMC before calling again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.bmc.access import BmcWorkRefused, ServerAccess, server_access
from shared.bmc.failures import busy_delay, classify, code_for
from shared.contracts.commands import JobTickCommand
from shared.core.clock import utcnow
from shared.core.log import get_logger
from shared.core.settings import Settings
from shared.lifecycle import job as lifecycle
from shared.lifecycle import node as node_lifecycle
from shared.lifecycle.job import Fail, Outcome, Poll, Retry, StepReport
from shared.messaging.consumer import CommandContext, Reschedule, WorkerRuntime
from shared.messaging.streams import JOBS
from shared.models import Job, Server
from shared.models.jobs import BMC_UNREACHABLE
from shared.observability import metrics
from shared.redfish import CertificateMismatch, RedfishError, RedfishSession, WriteResult

log = get_logger(__name__)

# How much of the lease a step may use; the rest is for committing its outcome.
STEP_SHARE_OF_LEASE = 0.8


@dataclass
class StepContext:
    """What a step gets: the job as claimed, its BMC, and where to put what it learns."""

    job: Job
    access: ServerAccess
    settings: Settings
    runtime: WorkerRuntime
    token: str
    data: dict[str, Any]
    notes: list[dict[str, Any]] = field(default_factory=list)
    progress: int | None = None
    power_state: str | None = None
    intent_result: dict[str, Any] | None = None
    _exits: AsyncExitStack = field(default_factory=AsyncExitStack)
    _bmc: RedfishSession | None = None

    @property
    def now(self) -> datetime:
        return utcnow()

    @property
    def step_expired(self) -> bool:
        deadline = self.job.step_deadline_at
        return deadline is not None and deadline <= utcnow()

    @property
    def unsettled_intent(self) -> dict[str, Any] | None:
        """The call an earlier delivery of this step meant to make and may have made (it died
        or lost the answer before recording the result); None if there is none."""
        job = self.job
        return job.intent if job.intent is not None and job.intent_result is None else None

    def note(self, text: str, message_id: str | None = None, *, code: str | None = None) -> None:
        """A message for the job; ``code`` when it reports a failure (one built from a BMC
        error's text gets its code, so users who are not superusers see its generic text)."""
        self.notes.append(lifecycle.message(text, message_id, code=code))

    async def bmc(self) -> RedfishSession:
        """The server's BMC, logged in (a session reused across steps and jobs)."""
        if self._bmc is None:
            access = self.access
            password = self.runtime.credentials.decrypt(access.credential.password_encrypted)
            self._bmc = await self._exits.enter_async_context(
                self.runtime.redfish_sessions.session(
                    access.base_url,
                    access.credential.username,
                    password,
                    access.tls,
                    vendor=access.node.vendor,
                )
            )
        return self._bmc

    async def intend(self, call: dict[str, Any]) -> None:
        """Commit that this step is about to make ``call``, before making it.

        Raises `lifecycle.CancelRequested` (a cancel arrived: do not call) or
        `lifecycle.LeaseLost` (the job moved on without us).
        """
        assert self.job.id is not None
        if lifecycle.ending_of(self.job) is not None:
            call = call | {"cleanup_step": self.job.step}
        async with self.runtime.db.session() as session:
            await lifecycle.record_intent(session, self.job.id, self.token, call)
            await session.commit()
        self.job.intent = call
        self.job.intent_result = None

    def started(self, result: WriteResult) -> None:
        """Record what the call started (committed with the step's outcome)."""
        self.intent_result = {"status": result.status, "task": result.task}

    def refused(self, status: int | None, message_id: str | None) -> None:
        """Record that the BMC refused the call (it did not act on it)."""
        self.intent_result = {"status": status, "refused": True, "message_id": message_id}


Step = Callable[[StepContext], Awaitable[Outcome]]


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its named steps and the one a job starts at."""

    name: str
    first_step: str
    steps: Mapping[str, Step]
    # The step a cancelled or expired job goes to before it ends (None: it ends at once).
    cleanup_step: str | None = None

    def cleanup(self, settings: Settings) -> lifecycle.Cleanup | None:
        if self.cleanup_step is None:
            return None
        return lifecycle.Cleanup(self.cleanup_step, settings.job_cleanup_timeout_s)


async def run_tick(
    cmd: JobTickCommand, ctx: CommandContext, kinds: Mapping[str, JobKind]
) -> Reschedule | None:
    settings = ctx.settings
    first_steps = {name: kind.first_step for name, kind in kinds.items()}
    cleanups = {
        name: cleanup
        for name, kind in kinds.items()
        if (cleanup := kind.cleanup(settings)) is not None
    }
    async with ctx.db.session() as session:
        claim = await lifecycle.claim(
            session,
            cmd.job_id,
            cmd.ticket,
            first_steps=first_steps,
            lease_s=settings.job_tick_timeout_s,
            cleanups=cleanups,
        )
        access: ServerAccess | BmcWorkRefused = BmcWorkRefused(
            "the job has no server", "configuration"
        )
        if isinstance(claim, lifecycle.Claimed) and claim.job.server_id is not None:
            server = await session.get(Server, claim.job.server_id)
            try:
                access = await server_access(session, server) if server else access
            except BmcWorkRefused as exc:  # no credential, or a certificate not trusted now
                access = exc
        await session.commit()
    if ctx.delivery > 1 and _redelivered(claim):
        metrics.command_redeliveries(JOBS.durable).inc()
    if isinstance(claim, lifecycle.Busy):
        return Reschedule(claim.retry_in, "another delivery holds the job")
    if not isinstance(claim, lifecycle.Claimed):
        return None
    job = claim.job
    kind = kinds.get(job.kind)
    report = await _run_step(job, claim.token, access, ctx, kind)
    if report is None:
        return None
    async with ctx.db.session() as session:
        assert job.id is not None
        cleanup = kind.cleanup(settings) if kind is not None else None
        delay = await lifecycle.advance(session, job.id, claim.token, report, cleanup)
        await session.commit()
    log.debug("job.stepped", job=job.id, step=job.step, outcome=type(report.outcome).__name__)
    return None if delay is None else Reschedule(delay, f"job {job.id} {job.step}")


def _redelivered(claim: lifecycle.ClaimResult) -> bool:
    """Whether this tick, delivered again, finds an earlier delivery's step unfinished (it still
    runs, or its worker died): what ``racksmith_command_redeliveries_total`` counts for other
    consumers. The job's rescheduled ticks are not redeliveries."""
    return isinstance(claim, lifecycle.Busy) or (
        isinstance(claim, lifecycle.Claimed) and claim.resumed
    )


async def _run_step(
    job: Job,
    token: str,
    access: ServerAccess | BmcWorkRefused,
    ctx: CommandContext,
    kind: JobKind | None,
) -> StepReport | None:
    """The step's report, or None when the job moved on without this delivery."""
    data = dict(job.data)
    if isinstance(access, BmcWorkRefused):
        return StepReport(Fail(code_for(access.cause).value, str(access)), data)
    step = kind.steps.get(job.step or "") if kind is not None else None
    if step is None:
        return StepReport(Fail("internal_error", f"Unknown step {job.kind}/{job.step}."), data)
    sctx = StepContext(job, access, ctx.settings, ctx.runtime, token, data)
    limit = ctx.settings.job_tick_timeout_s * STEP_SHARE_OF_LEASE
    try:
        async with sctx._exits, asyncio.timeout(limit):
            outcome = await step(sctx)
    except lifecycle.LeaseLost:
        return None
    except lifecycle.CancelRequested:
        outcome = Poll(0.0)  # committing it ends the job as cancelled, at this step boundary
    except CertificateMismatch as exc:
        outcome = await _certificate_refused(exc, access, ctx)
    except RedfishError as exc:
        outcome = _failure_outcome(exc, access, job, ctx.settings)
    except TimeoutError:
        outcome = Retry(
            BMC_UNREACHABLE,
            f"Step {job.step} took longer than {limit:g} s (a BMC that does not answer).",
            0.0,
            ctx.settings.bmc_unreachable_attempts,
        )
    except Exception as exc:  # a bug must not leave the job stuck: counted, then failed
        log.exception("job.step_crashed", job=job.id, step=job.step)
        outcome = Retry(
            "internal_error",
            f"Step {job.step} failed unexpectedly ({type(exc).__name__}).",
            ctx.settings.job_poll_interval_s,
            ctx.settings.bmc_unreachable_attempts,
        )
    return StepReport(
        outcome,
        sctx.data,
        sctx.notes,
        sctx.progress,
        sctx.power_state,
        sctx.intent_result,
    )


async def _certificate_refused(
    exc: CertificateMismatch, access: ServerAccess, ctx: CommandContext
) -> Outcome:
    """The BMC presented a certificate the TLS policy refuses (the handshake ended before any
    credential went out). If it is not the node's trusted one, the node stops in
    ``certificate_changed``: no BMC work for any of its servers until a superuser accepts it."""
    failure = classify(exc, access.bmc)
    reason = failure.reason
    presented = access.changed_certificate(exc)
    if presented is not None and access.node.id is not None:
        async with ctx.db.session() as session:
            node = await node_lifecycle.locked(session, access.node.id)
            if node is not None:
                node_lifecycle.certificate_changed(session, node, presented)
                reason = node.error or reason
            await session.commit()
    return Fail(failure.code, reason)


def _failure_outcome(
    exc: RedfishError, access: ServerAccess, job: Job, settings: Settings
) -> Outcome:
    failure = classify(exc, access.bmc)
    if failure.retry == "busy":
        delay = busy_delay(failure, job.step_attempts + 1)
        return Retry(failure.code, failure.reason, delay, settings.bmc_max_deliver)
    if failure.retry == "unreachable":
        delay = min(60.0, 2.0 ** min(job.step_attempts + 1, 6))
        return Retry(failure.code, failure.reason, delay, settings.bmc_unreachable_attempts)
    return Fail(failure.code, failure.reason)
