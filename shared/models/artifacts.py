"""Artifacts (the stored binaries behind firmware and OS image entries) and the grants that let
a BMC fetch one over the BMC-facing URL.

An artifact row is the bytes' record: where the store keeps them, what they are (SHA-256, size,
file name) and whether they are usable. The catalogs (``firmware.py``, ``os_images.py``) describe
what the bytes mean; each entry owns exactly one artifact.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, StringConstraints
from pydantic import Field as PField
from sqlalchemy import BigInteger, String
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS


class ArtifactKind(StrEnum):
    """Which catalog owns the artifact (and so which entity its events are about)."""

    firmware = "firmware"
    os_image = "os_image"
    # A deployment's cloud-init seed: built by Racksmith, deleted when the deployment ends.
    seed = "seed"


class ArtifactStatus(StrEnum):
    # Bytes are arriving (a source_url download in progress).
    uploading = "uploading"
    # All bytes arrived and matched; the store is confirming the object.
    verifying = "verifying"
    ready = "ready"
    # Could not be obtained or did not match; `status_reason` says why. Nothing is stored.
    invalid = "invalid"


class Artifact(SQLModel, table=True):
    __tablename__ = "artifact"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    kind: ArtifactKind = Field(sa_type=String(16), index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=100)
    # The store's key; null until the bytes are stored.
    storage_key: str | None = Field(default=None, max_length=200, unique=True)
    # Declared (source_url, before the download) or measured (once stored).
    sha256: str | None = Field(default=None, max_length=64, index=True)
    size: int | None = Field(default=None, sa_type=BigInteger)
    status: ArtifactStatus = Field(default=ArtifactStatus.uploading, sa_type=String(16), index=True)
    status_reason: str | None = Field(default=None, max_length=2000)
    source_url: str | None = Field(default=None, max_length=2000)
    # Bumped by every download started, so a command of an earlier one is recognised as stale.
    fetch: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ArtifactGrant(SQLModel, table=True):
    """Permission for whoever holds ``token`` to fetch one artifact until ``expires_at``.

    The token is the capability: BMCs cannot send API tokens, so the URL itself is the secret
    (``/a/<token>/<filename>``). Each use (a job, a deployment) gets its own grant, revoked when
    the use ends, and counts what was served under it.
    """

    __tablename__ = "artifact_grant"

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", ondelete="CASCADE", index=True)
    token: str = Field(max_length=64, unique=True)
    purpose: str = Field(max_length=200, index=True)
    expires_at: datetime = Field(index=True)
    revoked_at: datetime | None = None
    bytes_served: int = Field(default=0, sa_type=BigInteger)
    requests: int = 0
    last_served_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


# --- API shapes (not tables) -------------------------------------------------------------------


class ArtifactFields(BaseModel):
    """What a catalog entry shows of its bytes."""

    filename: str
    sha256: str | None
    size: int | None
    status: ArtifactStatus
    status_reason: str | None
    source_url: str | None

    @classmethod
    def fields_of(cls, artifact: Artifact) -> dict[str, object]:
        return {name: getattr(artifact, name) for name in ArtifactFields.model_fields}


Sha256 = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=64, pattern=r"^[0-9a-fA-F]{64}$"
    ),
]


class SourceFields(BaseModel):
    """Adding a catalog entry whose bytes a worker downloads (instead of uploading them)."""

    source_url: str = PField(
        min_length=1,
        max_length=2000,
        description="http(s) URL the fetcher worker downloads the file from (redirects are "
        "followed; every address must be globally routable or in "
        "RACKSMITH_ARTIFACT_SOURCE_ALLOWED_NETWORKS).",
    )
    sha256: Sha256 = PField(description="The file's SHA-256; a mismatch makes it `invalid`.")
    filename: str | None = PField(
        default=None,
        max_length=200,
        description="File name BMCs see in the URL; default: the URL's last path segment.",
    )
