"""The firmware catalog: update packages operators upload, and what each one is for.

An entry describes a binary (its type, version, vendor, the models it fits) and how to recognise
the component it updates in a server's firmware inventory (matching rules); its bytes are an
``Artifact``. Which rule matches what is the update and compliance code's business; this module
only keeps them well-formed.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, StringConstraints
from pydantic import Field as PField
from sqlalchemy import JSON, Column, String
from sqlmodel import Field, Relationship, SQLModel

from shared.core.clock import utcnow
from shared.models.artifacts import Artifact, ArtifactFields, SourceFields
from shared.models.base import NEVER_REUSE_IDS, reject_null


class FirmwareType(StrEnum):
    BIOS = "BIOS"
    BMC = "BMC"
    NIC = "NIC"
    RAID = "RAID"
    DRIVE = "DRIVE"
    CPLD = "CPLD"
    PSU = "PSU"
    OTHER = "OTHER"


class ApplyRequires(StrEnum):
    """What must happen for the new version to run after the BMC accepted it."""

    none = "none"
    host_reboot = "host_reboot"
    bmc_reset = "bmc_reset"
    ac_cycle = "ac_cycle"


class FirmwareBinary(SQLModel, table=True):
    __tablename__ = "firmware_binary"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", unique=True)
    name: str = Field(max_length=200, index=True)
    firmware_type: FirmwareType = Field(sa_type=String(16), index=True)
    version: str = Field(max_length=200, index=True)
    manufacturer: str = Field(default="", max_length=200, index=True)
    models: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    apply_requires: ApplyRequires = Field(default=ApplyRequires.none, sa_type=String(16))
    # Matching rules: Redfish SoftwareInventory `SoftwareId`s, HPE `Oem.Hpe.DeviceClass` and
    # `Targets` GUIDs, and a pattern for the inventory entry's name (Dell reports SoftwareId 0
    # for many NICs).
    software_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    device_classes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    target_guids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    name_pattern: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    # Bumped by every change (metadata or the artifact's status); part of its events' ids.
    revision: int = 1

    artifact: Artifact = Relationship(sa_relationship_kwargs={"lazy": "joined", "innerjoin": True})


# --- API shapes (not tables) -------------------------------------------------------------------

Text200 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Guid = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=36,
        pattern=r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
    ),
]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

_MODELS = "Server models this binary fits (as inventory reports `model`); empty: any."
_SOFTWARE_IDS = "Redfish `SoftwareId`s of the components it updates."
_DEVICE_CLASSES = "HPE `Oem.Hpe.DeviceClass` GUIDs of the components it updates."
_TARGET_GUIDS = "HPE component `Targets` GUIDs it applies to."
_NAME_PATTERN = (
    "Shell-style pattern (`*`, `?`, `[...]`), case-insensitive, for the inventory entry's "
    "`name`, e.g. `*Broadcom*57414*`; for vendors that report no usable SoftwareId."
)


class FirmwareFields(BaseModel):
    """The descriptive fields: what POST takes besides the file, PUT replaces."""

    name: Name
    firmware_type: FirmwareType
    version: Name
    manufacturer: Text200 = ""
    models: list[Identifier] = PField(default_factory=list, description=_MODELS)
    apply_requires: ApplyRequires = ApplyRequires.none
    software_ids: list[Identifier] = PField(default_factory=list, description=_SOFTWARE_IDS)
    device_classes: list[Guid] = PField(default_factory=list, description=_DEVICE_CLASSES)
    target_guids: list[Guid] = PField(default_factory=list, description=_TARGET_GUIDS)
    name_pattern: Text200 = PField(default="", description=_NAME_PATTERN)


class FirmwareFromSource(FirmwareFields, SourceFields):
    """POST as JSON: the descriptive fields and where to download the file from."""


class FirmwareUpdate(BaseModel):
    """PATCH: any of the descriptive fields."""

    _not_null = reject_null(*FirmwareFields.model_fields)

    name: Name | None = None
    firmware_type: FirmwareType | None = None
    version: Name | None = None
    manufacturer: Text200 | None = None
    models: list[Identifier] | None = PField(default=None, description=_MODELS)
    apply_requires: ApplyRequires | None = None
    software_ids: list[Identifier] | None = PField(default=None, description=_SOFTWARE_IDS)
    device_classes: list[Guid] | None = PField(default=None, description=_DEVICE_CLASSES)
    target_guids: list[Guid] | None = PField(default=None, description=_TARGET_GUIDS)
    name_pattern: Text200 | None = PField(default=None, description=_NAME_PATTERN)


class FirmwarePublic(FirmwareFields, ArtifactFields):
    id: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, firmware: FirmwareBinary) -> "FirmwarePublic":
        own = {n: getattr(firmware, n) for n in (*FirmwareFields.model_fields, "id")}
        dates = {"created_at": firmware.created_at, "updated_at": firmware.updated_at}
        return cls.model_validate(own | dates | ArtifactFields.fields_of(firmware.artifact))
