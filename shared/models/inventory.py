"""A server's hardware and firmware inventory, one table per Redfish resource family.

Each family is replaced as a set when its content changes, so a re-collection never duplicates
rows; ``odata_id`` keeps the link back to the resource on the BMC.
"""

from typing import Any, Literal

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel


class _ServerPart(SQLModel):
    id: int | None = Field(default=None, primary_key=True)
    server_id: int = Field(foreign_key="server.id", ondelete="CASCADE", index=True)
    odata_id: str = Field(max_length=400)
    name: str | None = Field(default=None, max_length=200)
    health: str | None = Field(default=None, max_length=32)
    state: str | None = Field(default=None, max_length=32)


class Processor(_ServerPart, table=True):
    __tablename__ = "processor"

    socket: str | None = Field(default=None, max_length=100)
    manufacturer: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    processor_type: str | None = Field(default=None, max_length=50)
    instruction_set: str | None = Field(default=None, max_length=50)
    max_speed_mhz: int | None = None
    total_cores: int | None = None
    total_threads: int | None = None


class MemoryModule(_ServerPart, table=True):
    __tablename__ = "memory_module"

    device_locator: str | None = Field(default=None, max_length=100)
    capacity_mib: int | None = None
    memory_device_type: str | None = Field(default=None, max_length=50)
    speed_mhz: int | None = None
    manufacturer: str | None = Field(default=None, max_length=200)
    part_number: str | None = Field(default=None, max_length=200)
    serial_number: str | None = Field(default=None, max_length=200)


class EthernetInterface(_ServerPart, table=True):
    __tablename__ = "ethernet_interface"

    mac_address: str | None = Field(default=None, max_length=17, index=True)
    # Kept, but flagged: two interfaces reporting one MAC is a BMC bug or a cloned NIC.
    duplicate_mac: bool = False
    speed_mbps: int | None = None
    link_status: str | None = Field(default=None, max_length=32)
    ipv4_addresses: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ipv6_addresses: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Storage(_ServerPart, table=True):
    """A storage subsystem with its controllers, drives and volumes (JSON: read together)."""

    __tablename__ = "storage"

    source: str = Field(default="Storage", max_length=16)
    controllers: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    drives: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    volumes: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    drives_count: int = 0
    capacity_bytes: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class FirmwareComponent(_ServerPart, table=True):
    __tablename__ = "firmware_component"

    component_id: str | None = Field(default=None, max_length=200)
    version: str | None = Field(default=None, max_length=200)
    updateable: bool | None = None
    manufacturer: str | None = Field(default=None, max_length=200)
    release_date: str | None = Field(default=None, max_length=64)
    # What matching a catalog binary needs (shared.redfish.firmware_identity); only the
    # `active` slot is the running version.
    software_id: str | None = Field(default=None, max_length=200)
    related_items: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    device_class: str | None = Field(default=None, max_length=64)
    targets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    slot: str = Field(default="active", max_length=16)


# --- API shapes -------------------------------------------------------------------------------


class _PartPublic(BaseModel):
    id: int
    odata_id: str
    name: str | None
    health: str | None
    state: str | None


class ProcessorPublic(_PartPublic):
    socket: str | None
    manufacturer: str | None
    model: str | None
    processor_type: str | None
    instruction_set: str | None
    max_speed_mhz: int | None
    total_cores: int | None
    total_threads: int | None


class MemoryPublic(_PartPublic):
    device_locator: str | None
    capacity_mib: int | None
    memory_device_type: str | None
    speed_mhz: int | None
    manufacturer: str | None
    part_number: str | None
    serial_number: str | None


class EthernetInterfacePublic(_PartPublic):
    mac_address: str | None
    duplicate_mac: bool
    speed_mbps: int | None
    link_status: str | None
    ipv4_addresses: list[str]
    ipv6_addresses: list[str]


class StoragePublic(_PartPublic):
    source: str
    controllers: list[dict[str, Any]]
    drives: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    drives_count: int
    capacity_bytes: int | None


class FirmwareComponentPublic(_PartPublic):
    component_id: str | None
    version: str | None
    updateable: bool | None
    manufacturer: str | None
    release_date: str | None
    software_id: str | None = PField(
        description="Redfish `SoftwareId`; null when the BMC reports none or `0` (Dell NICs)."
    )
    related_items: list[str] = PField(description="`RelatedItem` links: what the entry runs on.")
    device_class: str | None = PField(description="HPE `Oem.Hpe.DeviceClass`.")
    targets: list[str] = PField(description="HPE `Oem.Hpe.Targets` GUIDs.")
    slot: Literal["active", "backup", "staging", "previous"] = PField(
        description="`active` is the running firmware; `backup` (backup, golden, redundant "
        "images), `staging` (accepted, not yet applied) and `previous` (what a rollback "
        "restores) never count as the running version."
    )
