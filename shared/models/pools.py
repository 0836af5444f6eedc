"""Resource pools: how servers and switches are organised and how access is granted — a pool
belongs to a group, and members of the group see the pool, its sub-pools and what they hold."""

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PField
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS, reject_null


class Pool(SQLModel, table=True):
    __tablename__ = "pool"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    description: str = Field(default="", max_length=2000)
    group_id: int | None = Field(
        default=None, foreign_key="group.id", ondelete="SET NULL", index=True
    )
    parent_id: int | None = Field(
        default=None, foreign_key="pool.id", ondelete="RESTRICT", index=True
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 1


DEFAULT_POOL = "default"


class PoolCreate(BaseModel):
    name: str = PField(min_length=1, max_length=200)
    description: str = PField(default="", max_length=2000)
    group: int | None = None
    parent: int | None = None


class PoolUpdate(BaseModel):
    _not_null = reject_null("name", "description")

    name: str | None = PField(default=None, min_length=1, max_length=200)
    description: str | None = PField(default=None, max_length=2000)
    group: int | None = None
    parent: int | None = None


class SubPoolCreate(BaseModel):
    """``create_sub_pool/``: the parent is the URL's pool; the group defaults to the parent's."""

    name: str = PField(min_length=1, max_length=200)
    description: str = PField(default="", max_length=2000)
    group: int | None = None


class PoolPublic(BaseModel):
    id: int
    name: str
    description: str
    group: int | None
    parent: int | None
    sub_pools: list[int]
    servers_count: int
    switches_count: int
    created_at: datetime
    updated_at: datetime


class MemberSummary(BaseModel):
    """A server or switch as listed inside its pool."""

    id: int
    name: str | None
    model: str | None
    manufacturer: str | None
    serial_number: str | None


class PoolDetail(PoolPublic):
    servers: list[MemberSummary]
    switches: list[MemberSummary]


class Assignment(BaseModel):
    servers: list[int] = PField(min_length=1, max_length=10_000)


class SwitchAssignment(BaseModel):
    switches: list[int] = PField(min_length=1, max_length=10_000)
