"""Scan ranges, their per-run chunks, and the nodes (BMC endpoints) discovery finds."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import JSON, Column, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS


# Statuses are stored as plain strings (not database enums) so adding one needs no type migration.
class ScanStatus(StrEnum):
    ready = "ready"
    scanning = "scanning"
    error = "error"


class NodeStatus(StrEnum):
    discovered = "discovered"
    registering = "registering"
    registered = "registered"
    error = "error"
    # The BMC presents a certificate other than the trusted one: no BMC work runs for the node
    # (no credential is sent to it) until a superuser accepts the certificate it now presents.
    certificate_changed = "certificate_changed"


class ScanRange(SQLModel, table=True):
    __tablename__ = "scan_range"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    ip_from: str = Field(max_length=45)
    ip_to: str = Field(max_length=45)
    ports: list[int] = Field(sa_column=Column(JSON, nullable=False))
    status: ScanStatus = Field(default=ScanStatus.ready, sa_type=String(16), index=True)
    # Incremented by every run_scan; chunk rows and command ids carry it so a stale command
    # from an earlier run is recognised and ignored.
    run: int = 0
    addresses_total: int = 0
    addresses_scanned: int = 0
    nodes_found: int = 0
    # Addresses that accepted a TCP connection but never answered the Redfish probe, even on
    # the second, slower try: BMCs among them are missing from the run, which says so.
    addresses_unanswered: int = 0
    last_scan_started_at: datetime | None = None
    last_scan_finished_at: datetime | None = None
    last_error: str | None = None
    last_warning: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ScanChunk(SQLModel, table=True):
    """One slice of one run of a range; the unit of work a scanner replica takes."""

    __tablename__ = "scan_chunk"
    __table_args__ = (UniqueConstraint("scan_range_id", "run", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    scan_range_id: int = Field(foreign_key="scan_range.id", ondelete="CASCADE", index=True)
    run: int
    index: int
    first_address: str = Field(max_length=45)
    address_count: int
    addresses_scanned: int = 0
    nodes_found: int = 0
    addresses_unanswered: int = 0
    done_at: datetime | None = None
    error: str | None = None


class Node(SQLModel, table=True):
    """A BMC endpoint, keyed by (ip, port)."""

    __tablename__ = "node"
    __table_args__ = (UniqueConstraint("ip", "port"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    ip: str = Field(max_length=45)
    port: int
    url: str = Field(max_length=300, index=True)
    vendor: str | None = Field(default=None, max_length=200, index=True)
    product: str | None = Field(default=None, max_length=200, index=True)
    redfish_version: str | None = Field(default=None, max_length=32)
    uuid: str | None = Field(default=None, max_length=64)
    # SHA-256 of the certificate last seen (by discovery or a connection to the BMC).
    fingerprint: str | None = Field(default=None, max_length=64)
    # SHA-256 of the certificate trusted for BMC work: the one the last successful registration
    # talked to, or one a superuser accepted. Scans never change it.
    trusted_fingerprint: str | None = Field(default=None, max_length=64)
    # The certificate last seen is not the trusted one.
    fingerprint_changed: bool = False
    status: NodeStatus = Field(default=NodeStatus.discovered, sa_type=String(32), index=True)
    error: str | None = None
    scan_range_id: int | None = Field(
        default=None, foreign_key="scan_range.id", ondelete="SET NULL", index=True
    )
    auth_profile_id: int | None = Field(
        default=None, foreign_key="auth_profile.id", ondelete="SET NULL", index=True
    )
    # The credential that worked, so later work logs in at the first attempt.
    credential_id: int | None = Field(
        default=None, foreign_key="credential.id", ondelete="SET NULL"
    )
    # Incremented by every register request; a command from an earlier request is ignored.
    registration: int = 0
    # When the registration in progress was requested: the watchdog fails a node still
    # `registering` long after it.
    registration_started_at: datetime | None = None
    registered_at: datetime | None = None
    first_seen: datetime = Field(default_factory=utcnow, index=True)
    last_seen: datetime = Field(default_factory=utcnow, index=True)
    # Bumped on every change an event reports; part of the event id so each change is
    # published once however often a handler runs.
    version: int = 1


# --- API shapes (not tables) -------------------------------------------------------------------

Port = Annotated[int, PField(ge=1, le=65535)]


# Room for any IPv6 address with a zone, or a network in CIDR notation.
ADDRESS_LENGTH = 64


class ScanRangeCreate(BaseModel):
    """``ip_from``/``ip_to``, or ``cidr`` as a shorthand for a network's usable hosts."""

    name: str = PField(min_length=1, max_length=200)
    ip_from: str | None = PField(default=None, max_length=ADDRESS_LENGTH)
    ip_to: str | None = PField(default=None, max_length=ADDRESS_LENGTH)
    cidr: str | None = PField(default=None, max_length=ADDRESS_LENGTH)
    ports: list[Port] = PField(default_factory=lambda: [443], min_length=1)


class ScanRangeUpdate(BaseModel):
    name: str | None = PField(default=None, min_length=1, max_length=200)
    ip_from: str | None = PField(default=None, max_length=ADDRESS_LENGTH)
    ip_to: str | None = PField(default=None, max_length=ADDRESS_LENGTH)
    cidr: str | None = PField(default=None, max_length=ADDRESS_LENGTH)
    ports: list[Port] | None = PField(default=None, min_length=1)


class ScanRangePublic(BaseModel):
    id: int
    name: str
    ip_from: str
    ip_to: str
    ports: list[int]
    status: ScanStatus
    addresses_total: int
    addresses_scanned: int
    nodes_found: int
    addresses_unanswered: int = PField(
        description="Addresses of the last run that accepted a TCP connection but never "
        "answered the Redfish probe, even on a second, slower try."
    )
    last_scan_started_at: datetime | None
    last_scan_finished_at: datetime | None
    last_error: str | None
    last_warning: str | None = PField(
        description="Set when the last run finished but may have missed BMCs (addresses that "
        "accepted a connection and never answered); `null` when it probed every address."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, scan_range: ScanRange) -> "ScanRangePublic":
        return cls.model_validate(scan_range, from_attributes=True)


class RunScan(BaseModel):
    scan_ranges: list[int] = PField(min_length=1)


class RunScanAccepted(BaseModel):
    started: list[int]
    already_scanning: list[int]
    scan_ranges: list[ScanRangePublic]


class NodePublic(BaseModel):
    id: int
    url: str
    ip: str
    port: int
    vendor: str | None
    product: str | None
    redfish_version: str | None
    uuid: str | None
    fingerprint: str | None = PField(
        description="SHA-256 of the certificate the BMC presented last (discovery or BMC work)."
    )
    trusted_fingerprint: str | None = PField(
        description="SHA-256 of the certificate trusted for BMC work: set by registration or "
        "`accept_certificate/`, never by a scan."
    )
    fingerprint_changed: bool = PField(
        description="The certificate presented last is not the trusted one."
    )
    status: NodeStatus
    error: str | None
    scan_range: int | None
    auth_profile: int | None
    registered_at: datetime | None
    first_seen: datetime
    last_seen: datetime

    @classmethod
    def of(cls, node: Node) -> "NodePublic":
        related = {"scan_range": node.scan_range_id, "auth_profile": node.auth_profile_id}
        data = {name: getattr(node, name) for name in cls.model_fields if name not in related}
        return cls.model_validate(data | related)
