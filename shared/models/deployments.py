"""Deployments: an OS image installed on a server through its BMC, one ``deployment`` job per
server (``services/jobs/kinds/deployment.py``), and the call-home the installer makes when done.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints
from pydantic import Field as PField
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow

DEPLOYMENT = "deployment"
# Error codes of a deployment job besides the BMC ones every job has.
IMAGE_UNREACHABLE = "image_unreachable"
MEDIA_NOT_MOUNTED = "media_not_mounted"
INSTALLER_TIMEOUT = "installer_timeout"
UNSUPPORTED_MEDIA = "unsupported_media"
IMAGE_NOT_READY = "image_not_ready"


class DeploymentStatus(StrEnum):
    deploying = "deploying"
    deployed = "deployed"
    failed = "failed"
    cancelled = "cancelled"


class DeploymentMethod(StrEnum):
    virtual_media = "virtual_media"
    uefi_http = "uefi_http"


class CallHome(SQLModel, table=True):
    """The one-time call-home of one deployment job: the installer POSTs to a URL holding a
    token whose SHA-256 is kept here; ``called_at`` is set by the first POST, and the job's
    waiting step reads it."""

    __tablename__ = "deployment_call_home"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", ondelete="CASCADE", unique=True)
    token_sha256: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    called_at: datetime | None = None
    # What the installer said (instance_id, hostname), and from where.
    caller: str | None = Field(default=None, max_length=500)


# --- API shapes (not tables) -------------------------------------------------------------------


class DeploymentConfig(BaseModel):
    """What the server is given through its cloud-init seed."""

    hostname: str | None = PField(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$",
        description="The host name (`local-hostname` in the seed's meta-data); default the "
        "server's name.",
    )
    # An OpenSSH public key line is a few hundred characters (RSA 16384: about 2,800).
    ssh_authorized_keys: list[Annotated[str, StringConstraints(max_length=8192)]] = PField(
        default_factory=list, max_length=100
    )
    network: dict[str, Any] | None = PField(
        default=None, description="A cloud-init network-config (version 1 or 2), as given."
    )
    user_data: str | None = PField(
        default=None,
        max_length=64 * 1024,
        description="A `#cloud-config` document merged under what Racksmith adds (phone_home).",
    )


class DeploymentRequest(BaseModel):
    servers: list[int] = PField(min_length=1, max_length=10_000)
    os: int = PField(description="The OS image (`/api/os/{id}/`), which must be `ready`.")
    method: DeploymentMethod = DeploymentMethod.virtual_media
    config: DeploymentConfig = PField(default_factory=DeploymentConfig)
    timeout: float | None = PField(
        default=None,
        ge=1,
        le=86_400,
        description="Seconds the installer gets to call home or power off "
        "(default RACKSMITH_DEPLOY_INSTALL_TIMEOUT_S).",
    )


class CallHomeAccepted(BaseModel):
    job: int
