"""Servers: one per ComputerSystem behind a registered node's BMC."""

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.models.accounts import utcnow


class Server(SQLModel, table=True):
    __tablename__ = "server"
    # Natural key: a system is its @odata.id on its BMC; re-registration updates, never duplicates.
    __table_args__ = (UniqueConstraint("node_id", "system_path"),)

    id: int | None = Field(default=None, primary_key=True)
    node_id: int | None = Field(
        default=None, foreign_key="node.id", ondelete="SET NULL", index=True
    )
    system_path: str = Field(max_length=300)
    uuid: str | None = Field(default=None, max_length=64, index=True)
    name: str | None = Field(default=None, max_length=200, index=True)
    hostname: str | None = Field(default=None, max_length=255)
    model: str | None = Field(default=None, max_length=200, index=True)
    manufacturer: str | None = Field(default=None, max_length=200, index=True)
    serial_number: str | None = Field(default=None, max_length=200, index=True)
    sku: str | None = Field(default=None, max_length=200, index=True)
    bios_version: str | None = Field(default=None, max_length=200, index=True)
    power_state: str | None = Field(default=None, max_length=32, index=True)
    health: str | None = Field(default=None, max_length=32, index=True)
    bmc_url: str | None = Field(default=None, max_length=300, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 1


class ServerPublic(BaseModel):
    id: int
    uuid: str | None
    node: int | None
    name: str | None
    hostname: str | None
    model: str | None
    manufacturer: str | None
    serial_number: str | None
    sku: str | None
    bios_version: str | None
    power_state: str | None
    health: str | None
    bmc_url: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, server: Server) -> "ServerPublic":
        data = {name: getattr(server, name) for name in cls.model_fields if name != "node"}
        return cls.model_validate(data | {"node": server.node_id})
