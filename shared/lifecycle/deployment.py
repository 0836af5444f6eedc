"""A deployment's resources outside its job row: the cloud-init seed it serves, the grants under
which the BMC and the installer fetch the image and the seed, and its one-time call-home.

The image and the seed are granted for the same purpose (``deployment job <id>``), so they sit
in one directory of the artifact server: ``<artifact URL>/a/<token>/<image file>`` and
``.../<token>/cidata.iso`` — the seed "beside the image" for BMCs that mount one medium at a
time, and a second medium for the others. The call-home URL carries a token of its own (only its
SHA-256 is stored), served by the API: the first POST records the call and wakes the job, any
later one is refused.

Who calls what: the deployment job's first step ``prepare``s (and a retry of the step prepares
anew, revoking what an earlier attempt left); the API's call-home route calls ``called_home``;
the job's end ``release``s; ``ended`` keeps the server's ``deployment_status`` and ``os``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.artifacts import grants, iso
from shared.artifacts.store import ArtifactStore
from shared.core.clock import utcnow
from shared.core.settings import Settings
from shared.models import Artifact, ArtifactGrant, ArtifactKind, ArtifactStatus, Job, Server
from shared.models.deployments import CallHome, DeploymentConfig, DeploymentStatus
from shared.models.jobs import JobState

SEED_FILENAME = "cidata.iso"
CALL_HOME_PATH = "/api/deployment/call_home"
_STATUS = {
    JobState.completed: DeploymentStatus.deployed,
    JobState.failed: DeploymentStatus.failed,
    JobState.cancelled: DeploymentStatus.cancelled,
}


def purpose(job_id: int) -> str:
    return f"deployment job {job_id}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Prepared:
    image_url: str
    seed_url: str


def user_data(config: DeploymentConfig, hostname: str, call_home: str) -> bytes:
    """The seed's ``#cloud-config``: the request's own document, with the host name, the SSH
    keys and Racksmith's ``phone_home`` set over it."""
    document: dict[str, Any] = {}
    if config.user_data:
        loaded = yaml.safe_load(config.user_data)
        document = dict(loaded) if isinstance(loaded, dict) else {}
    document["hostname"] = hostname
    if config.ssh_authorized_keys:
        keys = document.get("ssh_authorized_keys")
        document["ssh_authorized_keys"] = [
            *(keys if isinstance(keys, list) else []),
            *config.ssh_authorized_keys,
        ]
    document["phone_home"] = {
        "url": call_home,
        "post": ["instance_id", "hostname", "fqdn"],
        "tries": 10,
    }
    return b"#cloud-config\n" + yaml.safe_dump(document, sort_keys=False).encode()


def seed_image(job_id: int, config: DeploymentConfig, hostname: str, call_home: str) -> bytes:
    meta = yaml.safe_dump(
        {"instance-id": f"racksmith-job-{job_id}", "local-hostname": hostname}, sort_keys=False
    ).encode()
    network = yaml.safe_dump(config.network).encode() if config.network is not None else None
    return iso.seed(meta, user_data(config, hostname, call_home), network)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def prepare(
    session: AsyncSession,
    settings: Settings,
    store: ArtifactStore,
    job: Job,
    server: Server,
    image: Artifact,
) -> Prepared:
    """Store the seed, grant it and the image, and arm the call-home (the caller commits);
    whatever an earlier attempt of this job left is revoked first."""
    assert job.id is not None
    await release(session, store, job.id)
    config = DeploymentConfig.model_validate(job.params.get("config") or {})
    token = secrets.token_urlsafe(32)
    session.add(CallHome(job_id=job.id, token_sha256=token_hash(token)))
    call_home = f"{settings.effective_call_home_url}{CALL_HOME_PATH}/{token}/"
    hostname = config.hostname or _hostname(server)
    stored = await store.put(_one(seed_image(job.id, config, hostname, call_home)))
    seed = Artifact(
        kind=ArtifactKind.seed,
        filename=SEED_FILENAME,
        content_type="application/x-iso9660-image",
        storage_key=stored.key,
        sha256=stored.sha256,
        size=stored.size,
        status=ArtifactStatus.ready,
    )
    session.add(seed)
    await session.flush()
    ttl = timedelta(seconds=settings.deploy_deadline_s + settings.job_cleanup_timeout_s)
    image_url = grants.grant(session, settings, image, purpose(job.id), ttl)
    seed_url = grants.grant(session, settings, seed, purpose(job.id), ttl)
    return Prepared(image_url, seed_url)


def _hostname(server: Server) -> str:
    name = "".join(c if c.isalnum() else "-" for c in (server.name or "")).strip("-")
    return (name or f"server-{server.id}")[:63].strip("-")


async def called_home(session: AsyncSession, token: str, caller: str) -> int | None:
    """Record the installer's call; the job's id, or None for a token that is unknown or was
    used already (the caller commits)."""
    row = (
        await session.exec(select(CallHome).where(col(CallHome.token_sha256) == token_hash(token)))
    ).one_or_none()
    if row is None or row.called_at is not None:
        return None
    row.called_at = utcnow()
    row.caller = caller[:500]
    session.add(row)
    return row.job_id


async def call_home_seen(session: AsyncSession, job_id: int) -> CallHome | None:
    """The job's call-home, once the installer made it."""
    row = (await session.exec(select(CallHome).where(col(CallHome.job_id) == job_id))).one_or_none()
    return row if row is not None and row.called_at is not None else None


async def release(session: AsyncSession, store: ArtifactStore, job_id: int) -> None:
    """End the job's grants, drop its seeds and its call-home (the caller commits; the seeds'
    bytes go first: an object left behind is garbage, a row without its object an error)."""
    await grants.revoke_purpose(session, purpose(job_id))
    seeds = (
        await session.exec(
            select(Artifact)
            .join(ArtifactGrant, col(ArtifactGrant.artifact_id) == col(Artifact.id))
            .where(
                col(ArtifactGrant.purpose) == purpose(job_id),
                col(Artifact.kind) == ArtifactKind.seed,
            )
        )
    ).all()
    for seed in seeds:
        if seed.storage_key is not None:
            await store.delete(seed.storage_key)
        await session.delete(seed)
    await session.exec(delete(CallHome).where(col(CallHome.job_id) == job_id))


def started(session: AsyncSession, server: Server) -> None:
    server.deployment_status = DeploymentStatus.deploying.value
    server.updated_at = utcnow()
    session.add(server)


def ended(session: AsyncSession, server: Server, job: Job, state: JobState) -> None:
    """The deployment job ended: the server says how, and on success which OS it runs."""
    status = _STATUS.get(state)
    if status is None:
        return
    server.deployment_status = status.value
    if status is DeploymentStatus.deployed:
        os_id = job.params.get("os")
        server.os_image_id = os_id if isinstance(os_id, int) else server.os_image_id
    server.version += 1
    server.updated_at = utcnow()
    session.add(server)
