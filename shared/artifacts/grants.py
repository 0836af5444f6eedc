"""Grants: per-use URLs under which BMCs fetch an artifact from the artifact server.

``grant`` is what firmware-update and deployment jobs call: it returns
``<RACKSMITH_ARTIFACT_URL>/a/<token>/<filename>`` — unguessable (256 random bits), ending in the
file name (BMCs and installers look at the extension), with no ``?`` or ``=`` (some BMCs refuse
URLs with a query). No API token is needed: the URL is the permission, valid until it expires or
is revoked (``revoke`` / ``revoke_purpose`` when the job ends). The artifact server counts the
requests and bytes served under each grant.

Grants made for the same purpose share a directory: ``/a/<token>/<filename>`` serves any file
granted for the purpose of ``token``'s grant — how a deployment's seed sits beside its image.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.core.clock import utcnow
from shared.core.settings import Settings
from shared.models import Artifact, ArtifactGrant, ArtifactStatus

# Path prefix of grant URLs on the artifact server.
PREFIX = "/a"


class NotReadyError(ValueError):
    """Only a ``ready`` artifact can be granted: there are no verified bytes to serve yet."""


def url_for(settings: Settings, grant: ArtifactGrant, artifact: Artifact) -> str:
    return f"{settings.effective_artifact_url}{PREFIX}/{grant.token}/{quote(artifact.filename)}"


def grant(
    session: AsyncSession,
    settings: Settings,
    artifact: Artifact,
    purpose: str,
    ttl: timedelta,
) -> str:
    """A new URL under which ``artifact`` can be fetched for ``ttl``, for ``purpose`` (e.g.
    ``job 42``). Added to the session; valid once the caller commits."""
    if artifact.status != ArtifactStatus.ready:
        raise NotReadyError(f"Artifact {artifact.id} is {artifact.status}, not ready.")
    assert artifact.id is not None
    row = ArtifactGrant(
        artifact_id=artifact.id,
        token=secrets.token_urlsafe(32),
        purpose=purpose[:200],
        expires_at=utcnow() + ttl,
    )
    session.add(row)
    return url_for(settings, row, artifact)


async def revoke(session: AsyncSession, token: str) -> bool:
    """End one grant now; False if it was not active."""
    result = await session.exec(
        update(ArtifactGrant)
        .where(col(ArtifactGrant.token) == token, col(ArtifactGrant.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)


async def revoke_purpose(session: AsyncSession, purpose: str) -> int:
    """End every grant made for ``purpose`` (a job that finished); returns how many."""
    result = await session.exec(
        update(ArtifactGrant)
        .where(col(ArtifactGrant.purpose) == purpose, col(ArtifactGrant.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)


@dataclass(frozen=True)
class Servable:
    """What the artifact server needs to answer one request."""

    grant_id: int
    storage_key: str
    filename: str
    content_type: str
    size: int
    sha256: str
    modified: datetime


async def servable(session: AsyncSession, token: str, filename: str) -> Servable | None:
    """The artifact behind a grant URL, if the grant is valid now and names this file."""
    row = (
        await session.exec(
            select(ArtifactGrant, Artifact)
            .join(Artifact, col(Artifact.id) == col(ArtifactGrant.artifact_id))
            .where(col(ArtifactGrant.token) == token)
        )
    ).one_or_none()
    if row is None:
        return None
    grant_row, artifact = row
    if artifact.filename != filename and grant_row.revoked_at is None:
        sibling = (
            await session.exec(
                select(ArtifactGrant, Artifact)
                .join(Artifact, col(Artifact.id) == col(ArtifactGrant.artifact_id))
                .where(
                    col(ArtifactGrant.purpose) == grant_row.purpose,
                    col(Artifact.filename) == filename,
                    col(ArtifactGrant.revoked_at).is_(None),
                )
                .order_by(col(ArtifactGrant.id).desc())
                .limit(1)
            )
        ).first()
        if sibling is None:
            return None
        grant_row, artifact = sibling
    if grant_row.revoked_at is not None or grant_row.expires_at <= utcnow():
        return None
    if artifact.filename != filename or artifact.status != ArtifactStatus.ready:
        return None
    if artifact.storage_key is None or artifact.size is None or artifact.sha256 is None:
        return None
    assert grant_row.id is not None
    return Servable(
        grant_id=grant_row.id,
        storage_key=artifact.storage_key,
        filename=artifact.filename,
        content_type=artifact.content_type,
        size=artifact.size,
        sha256=artifact.sha256,
        modified=artifact.updated_at,
    )


async def count_served(session: AsyncSession, grant_id: int, sent: int, requests: int = 1) -> None:
    """Add ``requests`` and ``sent`` bytes to a grant's counters (one UPDATE, no read)."""
    await session.exec(
        update(ArtifactGrant)
        .where(col(ArtifactGrant.id) == grant_id)
        .values(
            bytes_served=ArtifactGrant.bytes_served + sent,
            requests=ArtifactGrant.requests + requests,
            last_served_at=utcnow(),
        )
    )
