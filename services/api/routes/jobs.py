"""``/api/job/``: every long-running action on a server (power, boot), to watch, cancel and
retry. Group members see and act on the jobs of servers in their pools; anyone else's are 404.

A retry is a new job (a new id, ``retry_of`` naming the one it retries, ``attempts`` one more):
a finished job stays as it ended, so its history and events never change after the fact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlmodel import col, select

from services.api import jobs
from services.api.access import ScopeDep
from services.api.broker import announce
from services.api.deps import SessionDep
from services.api.errors import APIError, documented
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from shared.core.log import get_logger
from shared.lifecycle import job as job_lifecycle
from shared.messaging.publish import BrokerUnavailableError
from shared.models import Job, JobState, Server, User
from shared.models.jobs import JobPublic

log = get_logger(__name__)

router = APIRouter(prefix="/api/job", tags=["jobs"])

LIST_SPEC = ListSpec(
    pk=col(Job.id),
    search=(col(Job.kind), col(Job.state), col(Job.step), col(Job.error_code)),
    public=JobPublic,
    related={
        "server": (col(Job.server_id), Server),
        "created_by": (col(Job.created_by_id), User),
        "retry_of": (col(Job.retry_of_id), Job),
    },
    # Members see a generic text in its place (``Scope.job_view``): an exact filter on the real
    # one would let them test guesses; ``error_code`` is the filter.
    unfiltered=frozenset({"error"}),
    ordering={
        "id": col(Job.id),
        "kind": col(Job.kind),
        "state": col(Job.state),
        "server": col(Job.server_id),
        "created_at": col(Job.created_at),
        "started_at": col(Job.started_at),
        "finished_at": col(Job.finished_at),
    },
    default_ordering="-id",
)
JobListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]

NOT_ACTIVE = documented(409, "The job already ended")
NOT_RETRYABLE = documented(409, "The job is not failed or cancelled, or was already retried")


@router.get("/", summary="List jobs (newest first)")
async def list_jobs(session: SessionDep, scope: ScopeDep, query: JobListQuery) -> Page[JobPublic]:
    return await paginate(session, scope.narrow_jobs(select(Job)), query, scope.job_view)


@router.get("/{job_id}/", summary="Retrieve a job (poll its state)")
async def read_job(job_id: int, session: SessionDep, scope: ScopeDep) -> JobPublic:
    return scope.job_view(await scope.get_job(session, job_id))


@router.post(
    "/{job_id}/cancel/",
    status_code=202,
    summary="Cancel a job at its next step boundary",
    responses={**jobs.JOB_RESPONSES, **NOT_ACTIVE},
)
async def cancel_job(job_id: int, request: jobs.JobRequestDep) -> JobPublic:
    session, runtime = request.session, request.state.runtime
    job = await request.scope.get_job(session, job_id)
    async with request.watch() as watch:
        watch.expect([job_id])
        try:
            ended = await job_lifecycle.request_cancel(session, job_id, request.user.id)
        except job_lifecycle.NotActive:
            raise APIError(409, f"Job {job_id} already ended ({job.state}).") from None
        await session.commit()
        await announce(runtime)
        if not ended:
            # The next step now rather than at the next poll; without the broker, the job's own
            # next tick still sees the cancel.
            try:
                await job_lifecycle.wake(session, runtime, job_id)
            except BrokerUnavailableError as exc:
                log.warning("job.wake_failed", job=job_id, error=str(exc))
            await watch.wait(request.wait)
    return request.shown(await request.answer([job]))[0]


@router.post(
    "/{job_id}/retry/",
    status_code=202,
    summary="Run a failed or cancelled job again, as a new job",
    responses={**jobs.JOB_RESPONSES, **NOT_RETRYABLE},
)
async def retry_job(job_id: int, request: jobs.JobRequestDep) -> JobPublic:
    session = request.session
    job = await request.scope.get_job(session, job_id)
    if job.state not in (JobState.failed, JobState.cancelled):
        raise APIError(
            409, f"Only failed or cancelled jobs can be retried; job {job_id} is {job.state}."
        )
    server = await session.get(Server, job.server_id) if job.server_id else None
    if server is None:
        raise APIError(409, f"Job {job_id}'s server no longer exists.")
    (spec,) = request.new_jobs([server], job.kind, job.params)
    (retried,) = await request.start([replace(spec, retry_of=job)])
    return request.shown([retried])[0]
