"""The transactional outbox: events are written in the same transaction as the change they
describe, then relayed to NATS. A handler that dies between its commit and its publish leaves the
event here, and the next relay (its redelivery, or the periodic sweep) publishes it; the event id
is the ``Nats-Msg-Id``, so a second relay of the same row is dropped by JetStream."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=300)
    subject: str = Field(max_length=300)
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
