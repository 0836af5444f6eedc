"""The CloudEvents 1.0 envelope every Racksmith event travels in (NATS, SSE, webhooks alike)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import subjects

SOURCE = "/racksmith"
TYPE_PREFIX = "io.racksmith"


class CloudEvent(BaseModel):
    """Structured-mode CloudEvent. ``id`` is deterministic so a re-publish is deduplicated."""

    model_config = ConfigDict(frozen=True)

    specversion: str = "1.0"
    id: str
    source: str = SOURCE
    type: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def nats_subject(self) -> str:
        entity, entity_id = self.subject.split("/", 1)
        change = self.type.removeprefix(f"{TYPE_PREFIX}.{entity}.")
        return subjects.event_subject(entity, entity_id, change)


def make_event(
    entity: str,
    entity_id: int | str,
    change: str,
    *,
    version: int | str,
    data: dict[str, Any],
    time: datetime | None = None,
) -> CloudEvent:
    """Build the event for one change of one entity.

    ``version`` distinguishes successive changes of the same kind (a row version, a scan run);
    the same (entity, id, change, version) always yields the same id, which is what makes a
    redelivered handler's second publish a no-op.
    """
    return CloudEvent(
        id=f"evt:{entity}:{entity_id}:{change}:{version}",
        type=f"{TYPE_PREFIX}.{entity}.{change}",
        subject=f"{entity}/{entity_id}",
        time=time or datetime.now(UTC),
        data=data,
    )
