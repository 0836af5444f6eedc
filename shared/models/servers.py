"""Servers: one per ComputerSystem behind a registered node's BMC."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS, reject_null


class InventoryStatus(StrEnum):
    pending = "pending"
    collected = "collected"
    error = "error"


class InventoryErrorCode(StrEnum):
    """Why a collection failed, in words safe for anyone who sees the server.

    The full ``inventory_error`` names the BMC's address and often the account used to log in;
    only superusers see it. Members see the code and its ``generic`` text.
    """

    bmc_unreachable = "bmc_unreachable"
    bmc_busy = "bmc_busy"
    bmc_credentials_refused = "bmc_credentials_refused"
    bmc_certificate_mismatch = "bmc_certificate_mismatch"
    bmc_not_redfish = "bmc_not_redfish"
    bmc_error = "bmc_error"
    bmc_access_not_configured = "bmc_access_not_configured"

    @classmethod
    def generic_text(cls, code: str | None) -> str:
        """The text shown instead of a failure's reason to users who are not superusers."""
        return _GENERIC_INVENTORY_ERRORS[cls(code or cls.bmc_error)]


_ASK = "an administrator can see the details"
_GENERIC_INVENTORY_ERRORS = {
    InventoryErrorCode.bmc_unreachable: f"The server's BMC could not be reached; {_ASK}.",
    InventoryErrorCode.bmc_busy: f"The server's BMC stayed busy; {_ASK}.",
    InventoryErrorCode.bmc_credentials_refused: f"The server's BMC refused the login; {_ASK}.",
    InventoryErrorCode.bmc_certificate_mismatch: (
        f"The server's BMC presented an unexpected TLS certificate; {_ASK}."
    ),
    InventoryErrorCode.bmc_not_redfish: f"The server's BMC gave an unusable answer; {_ASK}.",
    InventoryErrorCode.bmc_error: f"Collecting the inventory failed; {_ASK}.",
    InventoryErrorCode.bmc_access_not_configured: (
        f"No working BMC credential is set up for this server; {_ASK}."
    ),
}


class Server(SQLModel, table=True):
    __tablename__ = "server"
    __table_args__ = (
        # Natural key: a system is its @odata.id on its BMC; re-registration updates it.
        UniqueConstraint("node_id", "system_path"),
        # The guide's "servers of pool X that are On, by name" in one index range scan.
        Index("ix_server_pool_power_name", "resource_pool_id", "power_state", "name"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    node_id: int | None = Field(
        default=None, foreign_key="node.id", ondelete="SET NULL", index=True
    )
    system_path: str = Field(max_length=300)
    uuid: str | None = Field(default=None, max_length=64, index=True)
    name: str | None = Field(default=None, max_length=200, index=True)
    hostname: str | None = Field(default=None, max_length=255, index=True)
    model: str | None = Field(default=None, max_length=200, index=True)
    manufacturer: str | None = Field(default=None, max_length=200, index=True)
    serial_number: str | None = Field(default=None, max_length=200, index=True)
    sku: str | None = Field(default=None, max_length=200, index=True)
    bios_version: str | None = Field(default=None, max_length=200, index=True)
    # The running BMC firmware, from the active BMC entry of the firmware inventory.
    bmc_version: str | None = Field(default=None, max_length=200, index=True)
    power_state: str | None = Field(default=None, max_length=32, index=True)
    health: str | None = Field(default=None, max_length=32, index=True)
    bmc_url: str | None = Field(default=None, max_length=300, index=True)
    resource_pool_id: int | None = Field(
        default=None, foreign_key="pool.id", ondelete="SET NULL", index=True
    )
    # The running operation (firmware update, deployment…) holding the server: while set, the
    # server cannot leave its pool.
    locked_by: str | None = Field(default=None, max_length=200)
    # The OS image last deployed to it (set when a deployment completes) and how the latest
    # deployment stands: deploying, deployed, failed, cancelled (null: never deployed).
    os_image_id: int | None = Field(
        default=None, foreign_key="os_image.id", ondelete="SET NULL", index=True
    )
    deployment_status: str | None = Field(default=None, max_length=16, index=True)
    # Set by people, never overwritten by inventory.
    description: str = Field(default="", sa_type=Text)
    location: str = Field(default="", max_length=200)
    inventory_status: InventoryStatus = Field(
        default=InventoryStatus.pending, sa_type=String(16), index=True
    )
    inventory_error: str | None = Field(default=None, sa_type=Text)
    inventory_error_code: InventoryErrorCode | None = Field(default=None, sa_type=String(32))
    last_inventory_at: datetime | None = Field(default=None, index=True)
    # Every collection attempt, successful or not: the scheduler queues by this, so servers whose
    # BMC keeps failing go to the back of the queue instead of starving the rest.
    inventory_attempted_at: datetime | None = Field(default=None, index=True)
    # Per resource family content hashes: what changed is what an event reports.
    inventory_hashes: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 1


class ServerPublic(BaseModel):
    id: int
    uuid: str | None
    node: int | None
    resource_pool: int | None
    name: str | None
    hostname: str | None
    model: str | None
    manufacturer: str | None
    serial_number: str | None
    sku: str | None
    bios_version: str | None
    bmc_version: str | None
    power_state: str | None
    health: str | None
    bmc_url: str | None
    description: str
    location: str
    locked_by: str | None
    os: int | None = PField(description="The OS image last deployed to the server.")
    deployment_status: str | None = PField(
        description="The latest deployment: `deploying`, `deployed`, `failed`, `cancelled`; "
        "null if the server was never deployed."
    )
    inventory_status: InventoryStatus
    inventory_error: str | None = PField(
        description="Why the last collection failed. Superusers see the full reason (it names "
        "the BMC and may name its account); everyone else the generic text of "
        "`inventory_error_code`."
    )
    inventory_error_code: InventoryErrorCode | None = PField(
        description="Why the last collection failed, as a code."
    )
    last_inventory_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, server: Server) -> "ServerPublic":
        related = {
            "node": server.node_id,
            "resource_pool": server.resource_pool_id,
            "os": server.os_image_id,
        }
        data: dict[str, Any] = {
            name: getattr(server, name) for name in cls.model_fields if name not in related
        }
        return cls.model_validate(data | related)

    def without_bmc_details(self) -> "ServerPublic":
        """As a user who is not a superuser sees it: the failure's generic text."""
        if self.inventory_error is None:
            return self
        generic = InventoryErrorCode.generic_text(self.inventory_error_code)
        return self.model_copy(update={"inventory_error": generic})


class ServerReplace(BaseModel):
    """PUT: every writable field; omitted ones keep their values, as with a DRF serializer
    (hardware facts are not writable)."""

    name: str | None = PField(default=None, max_length=200)
    resource_pool: int | None = None
    description: str = PField(default="", max_length=10_000)
    location: str = PField(default="", max_length=200)


class ServerUpdate(BaseModel):
    """PATCH: only what is sent changes."""

    _not_null = reject_null("description", "location")

    name: str | None = PField(default=None, max_length=200)
    resource_pool: int | None = None
    description: str | None = PField(default=None, max_length=10_000)
    location: str | None = PField(default=None, max_length=200)
