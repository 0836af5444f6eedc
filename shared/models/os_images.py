"""OS images: what Racksmith deploys to servers through their BMCs.

An image is one file (an ``Artifact``): an installer ISO that a BMC mounts as virtual media, or,
for `kernel_initrd`, a unified kernel image (UKI: kernel, initrd and command line in one EFI
binary) that firmware boots over UEFI HTTP.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, field_validator
from pydantic import Field as PField
from sqlalchemy import JSON, Column, String
from sqlmodel import Field, Relationship, SQLModel

from shared.core.clock import utcnow
from shared.models.artifacts import Artifact, ArtifactFields, SourceFields
from shared.models.base import NEVER_REUSE_IDS, reject_null
from shared.models.firmware import Name, Text200


class Arch(StrEnum):
    x86_64 = "x86_64"
    aarch64 = "aarch64"
    ppc64le = "ppc64le"
    s390x = "s390x"


class OSFamily(StrEnum):
    linux = "linux"
    windows = "windows"
    esxi = "esxi"
    bsd = "bsd"
    other = "other"


class ImageType(StrEnum):
    iso = "iso"
    kernel_initrd = "kernel_initrd"


class BootMode(StrEnum):
    uefi = "uefi"
    legacy = "legacy"


class OSImage(SQLModel, table=True):
    __tablename__ = "os_image"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", unique=True)
    name: str = Field(max_length=200, index=True)
    version: str = Field(default="", max_length=200, index=True)
    arch: Arch = Field(sa_type=String(16), index=True)
    os_family: OSFamily = Field(sa_type=String(16), index=True)
    image_type: ImageType = Field(default=ImageType.iso, sa_type=String(16), index=True)
    boot_modes: list[BootMode] = Field(
        default_factory=lambda: [BootMode.uefi], sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    # Bumped by every change; part of its events' ids (`version` is the OS's own).
    revision: int = 1

    artifact: Artifact = Relationship(sa_relationship_kwargs={"lazy": "joined", "innerjoin": True})


# --- API shapes (not tables) -------------------------------------------------------------------

_BOOT_MODES = "Firmware boot modes the image boots in."


def _distinct(modes: list[BootMode] | None) -> list[BootMode] | None:
    if modes is None:
        return None
    if not modes:
        raise ValueError("Name at least one boot mode.")
    return list(dict.fromkeys(modes))


class OSImageFields(BaseModel):
    name: Name
    version: Text200 = ""
    arch: Arch
    os_family: OSFamily
    image_type: ImageType = ImageType.iso
    boot_modes: list[BootMode] = PField(
        default_factory=lambda: [BootMode.uefi], description=_BOOT_MODES
    )

    _boot_modes = field_validator("boot_modes")(_distinct)


class OSImageFromSource(OSImageFields, SourceFields):
    """POST as JSON: the descriptive fields and where to download the file from."""


class OSImageUpdate(BaseModel):
    _not_null = reject_null(*OSImageFields.model_fields)

    name: Name | None = None
    version: Text200 | None = None
    arch: Arch | None = None
    os_family: OSFamily | None = None
    image_type: ImageType | None = None
    boot_modes: list[BootMode] | None = PField(default=None, description=_BOOT_MODES)

    _boot_modes = field_validator("boot_modes")(_distinct)


class OSImagePublic(OSImageFields, ArtifactFields):
    id: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, image: OSImage) -> "OSImagePublic":
        own = {n: getattr(image, n) for n in (*OSImageFields.model_fields, "id")}
        dates = {"created_at": image.created_at, "updated_at": image.updated_at}
        return cls.model_validate(own | dates | ArtifactFields.fields_of(image.artifact))
