"""Firmware baselines: the binaries a set of servers should run, and how far each server is.

A baseline names catalog binaries and, optionally, narrows the servers it is about by
manufacturer, models and pool (with its sub-pools). Each server's status against each baseline
is kept (``firmware_compliance``) so that a change of it is an event; the reports themselves are
computed from the current inventory when asked (`shared.lifecycle.compliance`).
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, StringConstraints
from pydantic import Field as PField
from sqlalchemy import JSON, Column, String
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS, reject_null


class FirmwareBaseline(SQLModel, table=True):
    __tablename__ = "firmware_baseline"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    description: str = Field(default="", max_length=2000)
    manufacturer: str = Field(default="", max_length=200, index=True)
    models: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Deleting the pool deletes its baselines: widening one to every server would be wrong.
    resource_pool_id: int | None = Field(
        default=None, foreign_key="pool.id", ondelete="CASCADE", index=True
    )
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class FirmwareBaselineBinary(SQLModel, table=True):
    """A binary a baseline names (a table, not a list: the catalog refuses to delete it)."""

    __tablename__ = "firmware_baseline_binary"

    baseline_id: int = Field(
        foreign_key="firmware_baseline.id", ondelete="CASCADE", primary_key=True
    )
    firmware_id: int = Field(
        foreign_key="firmware_binary.id", ondelete="RESTRICT", primary_key=True, index=True
    )
    position: int = 0


class ComponentStatus(StrEnum):
    compliant = "compliant"
    upgrade = "upgrade"
    downgrade = "downgrade"
    # The versions differ and their scheme cannot order them (never a guess).
    unknown = "unknown"
    # No running inventory entry matches the binary.
    missing = "missing"


class ServerStatus(StrEnum):
    compliant = "compliant"
    non_compliant = "non_compliant"
    # Never inventoried: nothing to compare.
    unknown = "unknown"


class FirmwareCompliance(SQLModel, table=True):
    """A server's last computed status against a baseline (what events report changes of)."""

    __tablename__ = "firmware_compliance"

    server_id: int = Field(foreign_key="server.id", ondelete="CASCADE", primary_key=True)
    baseline_id: int = Field(
        foreign_key="firmware_baseline.id", ondelete="CASCADE", primary_key=True, index=True
    )
    status: ServerStatus = Field(sa_type=String(16))
    # Bumped by every change of status; part of its events' ids.
    revision: int = 1
    computed_at: datetime = Field(default_factory=utcnow)


# --- API shapes (not tables) -------------------------------------------------------------------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]

_FIRMWARE = "Ids of catalog binaries; at most one per component they match is sensible."
_MANUFACTURER = "Only servers of this manufacturer (as inventory reports it); empty: any."
_MODELS = "Only servers of these models (as inventory reports `model`); empty: any."
_POOL = "Only servers in this pool and its sub-pools; null: every server."


class BaselineCreate(BaseModel):
    name: Name
    description: str = PField(default="", max_length=2000)
    firmware: list[int] = PField(min_length=1, max_length=200, description=_FIRMWARE)
    manufacturer: Text200 = PField(default="", description=_MANUFACTURER)
    models: list[Name] = PField(default_factory=list, max_length=200, description=_MODELS)
    resource_pool: int | None = PField(default=None, description=_POOL)


class BaselineUpdate(BaseModel):
    _not_null = reject_null("name", "description", "firmware", "manufacturer", "models")

    name: Name | None = None
    description: str | None = PField(default=None, max_length=2000)
    firmware: list[int] | None = PField(
        default=None, min_length=1, max_length=200, description=_FIRMWARE
    )
    manufacturer: Text200 | None = PField(default=None, description=_MANUFACTURER)
    models: list[Name] | None = PField(default=None, max_length=200, description=_MODELS)
    resource_pool: int | None = PField(default=None, description=_POOL)


class BaselinePublic(BaseModel):
    id: int
    name: str
    description: str
    firmware: list[int]
    manufacturer: str
    models: list[str]
    resource_pool: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, baseline: FirmwareBaseline, firmware: list[int]) -> "BaselinePublic":
        assert baseline.id is not None
        return cls(
            id=baseline.id,
            name=baseline.name,
            description=baseline.description,
            firmware=firmware,
            manufacturer=baseline.manufacturer,
            models=baseline.models,
            resource_pool=baseline.resource_pool_id,
            created_at=baseline.created_at,
            updated_at=baseline.updated_at,
        )


class ComponentCompliance(BaseModel):
    firmware: int = PField(description="The baseline's binary.")
    firmware_type: str
    component: str | None = PField(description="The inventory entry's name (null: missing).")
    odata_id: str | None = PField(description="The inventory entry on the BMC (null: missing).")
    current_version: str | None
    baseline_version: str
    status: ComponentStatus
    reboot_required: bool = PField(
        description="Applying the binary needs a host reboot or AC cycle to take effect."
    )


class ServerCompliance(BaseModel):
    server: int
    name: str | None
    model: str | None
    resource_pool: int | None
    status: ServerStatus
    components: list[ComponentCompliance]


class ComponentCounts(BaseModel):
    """Component rows by status."""

    compliant: int
    upgrade: int
    downgrade: int
    unknown: int
    missing: int


class ComplianceSummary(BaseModel):
    servers: int
    compliant: int
    non_compliant: int
    unknown: int
    components: ComponentCounts = PField(
        description="Component rows by status, over every server of the report."
    )


class BaselineCompliance(BaseModel):
    baseline: int
    summary: ComplianceSummary
    count: int
    next: str | None
    previous: str | None
    results: list[ServerCompliance]


class ServerBaselineCompliance(BaseModel):
    baseline: int
    name: str
    status: ServerStatus
    components: list[ComponentCompliance]


class ServerFirmwareCompliance(BaseModel):
    server: int
    status: ServerStatus = PField(
        description="`compliant` when compliant with every baseline that applies (or none "
        "applies); `unknown` when never inventoried."
    )
    baselines: list[ServerBaselineCompliance]
