"""Webhooks (HTTP receivers of events) and their delivery log.

A webhook's signing secret is encrypted at rest like BMC passwords; the clear text exists only in
the response that created it (when Racksmith generated it) and in the memory of whoever signs.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import JSON, BigInteger, Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS, reject_null


class ContentMode(StrEnum):
    """CloudEvents HTTP binding: the whole event as the body, or ``data`` as the body with the
    other attributes as ``ce-*`` headers."""

    structured = "structured"
    binary = "binary"


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class Webhook(SQLModel, table=True):
    __tablename__ = "webhook"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    url: str = Field(max_length=2000)
    # Full type names (`io.racksmith.node.registered`); empty: every event.
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    content_mode: ContentMode = Field(default=ContentMode.structured, sa_type=String(16))
    secret_encrypted: str = Field(sa_type=Text)
    active: bool = Field(default=True, index=True)
    disabled_reason: str | None = Field(default=None, max_length=2000)
    disabled_at: datetime | None = None
    # Failed attempts since the last success, and when that run of failures began: sustained
    # failure (both over their thresholds) disables the webhook.
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Bumped on every change; part of the id of the webhook's events.
    version: int = 1


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook: its attempts, outcome and, while pending, the next try."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        # A redelivered event (a worker died before acking it) must not be delivered twice.
        UniqueConstraint("webhook_id", "event_id"),
        # The oldest pending delivery per (webhook, entity) is the only one that may be sent.
        Index("ix_webhook_delivery_order", "webhook_id", "subject", "stream_sequence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id", ondelete="CASCADE", index=True)
    event_id: str = Field(max_length=300)
    event_type: str = Field(max_length=200, index=True)
    # The CloudEvent subject, `<entity>/<id>`: deliveries of one entity go out in order.
    subject: str = Field(max_length=300)
    # Position in RACKSMITH_EVENTS (null for `test/` sends): the order of an entity's events.
    stream_sequence: int | None = Field(default=None, sa_type=BigInteger)
    # The CloudEvent as published, so every attempt sends the same bytes.
    event: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, sa_type=String(16), index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, index=True)
    # A worker claims a delivery by setting both; another worker may take it over only after
    # `lease_until` (its sender died).
    lease_token: str | None = Field(default=None, max_length=32)
    lease_until: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


# --- API shapes (not tables) -------------------------------------------------------------------


EventTypeName = Annotated[str, PField(max_length=200)]
MAX_EVENT_TYPES = 100


class WebhookCreate(BaseModel):
    """POST and PUT. PUT resets omitted fields to these defaults, except ``secret``: a secret
    cannot be shown again, so it is changed only when one is sent."""

    name: str = PField(min_length=1, max_length=200)
    url: str = PField(min_length=1, max_length=2000)
    event_types: list[EventTypeName] = PField(
        default_factory=list,
        max_length=MAX_EVENT_TYPES,
        description="`io.racksmith.<entity>.<change>` or `<entity>.<change>`; empty: every event.",
    )
    content_mode: ContentMode = ContentMode.structured
    secret: str | None = PField(
        default=None,
        min_length=16,
        max_length=200,
        repr=False,
        description="HMAC-SHA256 signing key. Omitted on create: generated and returned once.",
    )
    active: bool = True


class WebhookUpdate(BaseModel):
    _not_null = reject_null("name", "url", "event_types", "content_mode", "secret", "active")

    name: str | None = PField(default=None, min_length=1, max_length=200)
    url: str | None = PField(default=None, min_length=1, max_length=2000)
    event_types: list[EventTypeName] | None = PField(default=None, max_length=MAX_EVENT_TYPES)
    content_mode: ContentMode | None = None
    secret: str | None = PField(default=None, min_length=16, max_length=200, repr=False)
    active: bool | None = PField(
        default=None, description="`true` re-enables a disabled webhook and clears its failures."
    )


class WebhookState(BaseModel):
    """A webhook's name, filters and health, which both the API and its events show."""

    id: int
    name: str
    event_types: list[str]
    content_mode: ContentMode
    active: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class WebhookPublic(WebhookState):
    """A webhook as the API shows it: never the secret."""

    url: str

    @classmethod
    def of(cls, webhook: Webhook) -> "WebhookPublic":
        return cls.model_validate(webhook, from_attributes=True)


class WebhookCreated(WebhookPublic):
    secret: str | None = PField(
        description="The generated signing secret — shown here once, never again. Null when "
        "the request supplied its own."
    )


class WebhookDeliveryPublic(BaseModel):
    id: int
    webhook: int
    event_id: str
    event_type: str
    subject: str
    stream_sequence: int | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> "WebhookDeliveryPublic":
        data = {n: getattr(delivery, n) for n in cls.model_fields if n != "webhook"}
        return cls.model_validate(data | {"webhook": delivery.webhook_id})
