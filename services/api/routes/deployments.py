"""``/api/deployment/``: install an OS image on servers through their BMCs — one ``deployment``
job per server (watched, cancelled and retried under ``/api/job/``) — and the call-home the
installers make when they are done.

The call-home route takes no API token: installers cannot hold one. Its URL is the permission
(a one-time token of 256 random bits, only its SHA-256 stored), and it is in the cloud-init seed
the BMC mounts, nowhere else.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.api import jobs
from services.api.bodylimit import body_limit
from services.api.deps import SessionDep, StateDep
from services.api.errors import APIError, FieldErrors, documented
from services.api.membership import resolve_servers
from shared.core.log import get_logger
from shared.lifecycle import deployment
from shared.lifecycle import job as job_lifecycle
from shared.messaging.publish import BrokerUnavailableError
from shared.models import Artifact, OSImage
from shared.models.deployments import (
    DEPLOYMENT,
    CallHomeAccepted,
    DeploymentMethod,
    DeploymentRequest,
)
from shared.models.jobs import BulkJobs
from shared.models.os_images import ImageType

log = get_logger(__name__)

router = APIRouter(prefix="/api/deployment", tags=["deployments"])

# What an installer may send (cloud-init's phone_home form: keys and names); more is refused.
CALL_HOME_MAX_BYTES = 64 * 1024


@router.post(
    "/",
    status_code=202,
    summary="Deploy an OS image to servers: one deployment job each, all or none",
    responses={
        **jobs.JOB_RESPONSES,
        **documented(
            400, "Unknown OS image or server, or an image that is not ready or cannot boot that way"
        ),
    },
)
async def create_deployment(body: DeploymentRequest, request: jobs.JobRequestDep) -> BulkJobs:
    session = request.session
    image = await session.get(OSImage, body.os)
    artifact = await session.get(Artifact, image.artifact_id) if image else None
    if image is None or artifact is None:
        raise APIError(400, f"OS image {body.os} does not exist.")
    if artifact.status != "ready":
        raise APIError(400, f"OS image {body.os} is {artifact.status}, not ready.")
    if (
        image.image_type is ImageType.kernel_initrd
        and body.method is not DeploymentMethod.uefi_http
    ):
        raise APIError(400, "A kernel_initrd image boots over UEFI HTTP only (method uefi_http).")
    if artifact.filename == deployment.SEED_FILENAME:
        raise APIError(400, f"An image named {deployment.SEED_FILENAME} would hide the seed.")
    servers = await resolve_servers(session, request.scope, body.servers)
    params = body.model_dump(mode="json", exclude_none=True, exclude={"servers"})
    specs = request.new_jobs(servers, DEPLOYMENT, params)
    return BulkJobs(jobs=request.shown(await request.start(specs)))


# A host name is at most 253 characters; an instance id is a host-made name of the same kind.
CALL_HOME_FIELD_MAX = 255


@router.post(
    "/call_home/{token}/",
    summary="The installer's call-home (cloud-init phone_home); no API token, once",
    responses=documented(404, "Unknown token, or it was used already"),
    # The form is read as it comes (installers send what they send); documented for clients.
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "instance_id": {"type": "string", "maxLength": CALL_HOME_FIELD_MAX},
                            "hostname": {"type": "string", "maxLength": CALL_HOME_FIELD_MAX},
                            "fqdn": {"type": "string", "maxLength": CALL_HOME_FIELD_MAX},
                        },
                    }
                }
            },
        }
    },
)
@body_limit(CALL_HOME_MAX_BYTES)
async def call_home(
    token: str, raw: Request, session: SessionDep, state: StateDep
) -> CallHomeAccepted:
    form = await raw.form()
    too_long = {
        key: [f"Ensure this field has no more than {CALL_HOME_FIELD_MAX} characters."]
        for key in ("instance_id", "hostname", "fqdn")
        if len(str(form.get(key, ""))) > CALL_HOME_FIELD_MAX
    }
    if too_long:
        raise FieldErrors(too_long)
    said = ", ".join(
        f"{key}={str(form[key])[:100]}" for key in ("instance_id", "hostname") if key in form
    )
    client = raw.client.host if raw.client else "unknown"
    job_id = await deployment.called_home(session, token, f"{said or 'no form'} from {client}")
    if job_id is None:
        raise APIError(404, "Not found.")
    await session.commit()
    try:
        # The job goes on now rather than at its next poll.
        await job_lifecycle.wake(session, state.runtime, job_id)
    except BrokerUnavailableError as exc:
        log.warning("deployment.wake_failed", job=job_id, error=str(exc))
    return CallHomeAccepted(job=job_id)
