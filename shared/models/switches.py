"""Network switches: inventoried by hand (for now) and organised in pools like servers."""

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PField
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS, reject_null


class Switch(SQLModel, table=True):
    __tablename__ = "switch"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    model: str = Field(default="", max_length=200, index=True)
    manufacturer: str = Field(default="", max_length=200, index=True)
    serial_number: str = Field(default="", max_length=200, index=True)
    mgmt_address: str = Field(default="", max_length=300, index=True)
    resource_pool_id: int | None = Field(
        default=None, foreign_key="pool.id", ondelete="SET NULL", index=True
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 1


class SwitchCreate(BaseModel):
    name: str = PField(min_length=1, max_length=200)
    model: str = PField(default="", max_length=200)
    manufacturer: str = PField(default="", max_length=200)
    serial_number: str = PField(default="", max_length=200)
    mgmt_address: str = PField(default="", max_length=300)
    resource_pool: int | None = None


class SwitchUpdate(BaseModel):
    _not_null = reject_null("name", "model", "manufacturer", "serial_number", "mgmt_address")

    name: str | None = PField(default=None, min_length=1, max_length=200)
    model: str | None = PField(default=None, max_length=200)
    manufacturer: str | None = PField(default=None, max_length=200)
    serial_number: str | None = PField(default=None, max_length=200)
    mgmt_address: str | None = PField(default=None, max_length=300)
    resource_pool: int | None = None


class SwitchPublic(BaseModel):
    id: int
    name: str
    model: str
    manufacturer: str
    serial_number: str
    mgmt_address: str
    resource_pool: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, switch: Switch) -> "SwitchPublic":
        data = {n: getattr(switch, n) for n in cls.model_fields if n != "resource_pool"}
        return cls.model_validate(data | {"resource_pool": switch.resource_pool_id})
