"""The API's side of jobs: starting them for a request, answering when they are done (a bounded
wait on their events, like ``register/``), and the 409s that name the job in the way.

Jobs are created by ``shared.lifecycle.job.create`` — many in one transaction and one pipelined
publish for a bulk request — and moved forward by the jobs worker; the API never talks to a BMC.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.access import Scope, ScopeDep
from services.api.auth import Principal
from services.api.broker import BROKER_UNAVAILABLE
from services.api.deps import CurrentUser, SessionDep, StateDep
from services.api.errors import APIError, ErrorDetail
from services.api.state import ApiState
from services.api.waiting import OutcomeWatch, watch_outcomes
from shared.lifecycle import deployment
from shared.lifecycle import job as job_lifecycle
from shared.models import Job, Server
from shared.models.deployments import DEPLOYMENT
from shared.models.jobs import FINAL_STATES, JobPublic, job_deadline_s

FINAL_CHANGES = tuple(state.value for state in FINAL_STATES)

WaitQuery = Annotated[
    float,
    Query(
        ge=0,
        le=600,
        description="Seconds to wait for the job(s) to finish before answering (200 when they "
        "did, 202 otherwise); 0, the default, answers 202 at once.",
    ),
]


class JobConflict(APIError):
    """409 naming the job in the way: ``{"detail": ..., "job": <id>}``."""

    def __init__(self, detail: str, job_id: int) -> None:
        super().__init__(409, detail)
        self.job_id = job_id

    @property
    def extra(self) -> dict[str, Any]:
        return {"job": self.job_id}


class JobsConflict(APIError):
    """409 for a bulk request: ``{"detail": ..., "conflicts": [{"server", "job"}, ...]}``."""

    def __init__(self, detail: str, active: dict[int, int]) -> None:
        super().__init__(409, detail)
        self.conflicts = [{"server": s, "job": j} for s, j in sorted(active.items())]

    @property
    def extra(self) -> dict[str, Any]:
        return {"conflicts": self.conflicts}


class JobConflictBody(ErrorDetail):
    job: int


JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Finished within `?wait=`: the job is completed, failed or cancelled."},
    202: {"description": "Accepted (and still running when the wait ended); poll the job."},
    409: {"model": JobConflictBody, "description": "The server has an active job (named)."},
    **BROKER_UNAVAILABLE,
}


def busy(server_id: int, job_id: int) -> JobConflict:
    return JobConflict(
        f"Server {server_id} has an active job ({job_id}); wait for it to end or cancel it.",
        job_id,
    )


@dataclass(frozen=True)
class JobRequest:
    """What an endpoint that starts, cancels or retries jobs works with (one dependency)."""

    session: AsyncSession
    scope: Scope
    state: ApiState
    user: Principal
    response: Response
    wait: float

    def new_jobs(
        self, servers: Sequence[Server], kind: str, params: dict[str, Any]
    ) -> list[job_lifecycle.NewJob]:
        deadline = job_deadline_s(kind, params, self.state.settings)
        if kind == DEPLOYMENT:
            for server in servers:
                deployment.started(self.session, server)
        return [
            job_lifecycle.NewJob(
                server=server,
                kind=kind,
                params=params,
                created_by=self.user.id,
                deadline_s=deadline,
            )
            for server in servers
        ]

    def watch(self) -> AbstractAsyncContextManager[OutcomeWatch]:
        """Listen for jobs' final events, when the request waits for them."""
        nats = self.state.runtime.nats if self.wait else None
        return watch_outcomes(nats, "job", FINAL_CHANGES)

    async def start(self, specs: Sequence[job_lifecycle.NewJob]) -> list[Job]:
        """Create the jobs (all or none), then wait up to ``wait`` s for them to finish."""
        async with self.watch() as watch:
            try:
                jobs = await job_lifecycle.create(self.session, self.state.runtime, specs)
            except job_lifecycle.ServersBusy as exc:
                if len(specs) == 1:
                    (server_id, job_id), *_ = exc.active.items()
                    raise busy(server_id, job_id) from None
                raise JobsConflict(
                    "Some servers have an active job; no job was created.", exc.active
                ) from None
            except job_lifecycle.AlreadyRetried as exc:
                raise JobConflict(
                    f"Job {exc.job_id} was already retried as job {exc.retry_id}.", exc.retry_id
                ) from None
            watch.expect(job.id for job in jobs if job.id is not None)
            await watch.wait(self.wait)
        return await self.answer(jobs)

    def shown(self, jobs: Sequence[Job]) -> list[JobPublic]:
        """The jobs as this request's user is shown them (``Scope.job_view``)."""
        return [self.scope.job_view(job) for job in jobs]

    async def answer(self, jobs: list[Job]) -> list[Job]:
        """The jobs as they are now; 200 when all of them finished, 202 otherwise."""
        for job in jobs:
            await self.session.refresh(job)
        finished = all(job.state in FINAL_STATES for job in jobs)
        self.response.status_code = 200 if finished else 202
        return jobs


def job_request(
    session: SessionDep,
    scope: ScopeDep,
    state: StateDep,
    user: CurrentUser,
    response: Response,
    wait: WaitQuery = 0,
) -> JobRequest:
    return JobRequest(session, scope, state, user, response, wait)


JobRequestDep = Annotated[JobRequest, Depends(job_request)]
