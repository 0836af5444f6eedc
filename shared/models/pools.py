"""Resource pools: how servers are organised and how access is granted (a pool belongs to a
group). The table exists from the inventory release so servers can be filtered and ordered by
pool; the pool API and access rules come with pool management."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models.accounts import utcnow


class Pool(SQLModel, table=True):
    __tablename__ = "pool"

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
