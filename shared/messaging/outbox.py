"""Staging events in the database transaction and relaying them to NATS afterwards.

``stage`` adds the event to the session of the change it describes; after the commit, ``relay``
publishes what is pending, oldest first, and deletes it. Relaying twice is harmless (the event id
is the ``Nats-Msg-Id``), so every handler relays after its commit and every process also sweeps
periodically for events a crashed process left behind.
"""

from __future__ import annotations

import asyncio

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import Database
from shared.log import get_logger
from shared.messaging.events import CloudEvent
from shared.messaging.publish import Publisher
from shared.models.outbox import OutboxEvent

log = get_logger(__name__)

RELAY_BATCH = 500


def stage(session: AsyncSession, event: CloudEvent) -> None:
    session.add(
        OutboxEvent(
            event_id=event.id, subject=event.nats_subject, body=event.model_dump(mode="json")
        )
    )


async def relay(db: Database, publisher: Publisher) -> int:
    """Publish every pending event; returns how many were published."""
    published = 0
    while True:
        async with db.session() as session:
            rows = (
                await session.exec(
                    select(OutboxEvent).order_by(col(OutboxEvent.id)).limit(RELAY_BATCH)
                )
            ).all()
            if not rows:
                return published
            for row in rows:
                await publisher.event(CloudEvent.model_validate(row.body))
            ids = [row.id for row in rows]
            await session.exec(delete(OutboxEvent).where(col(OutboxEvent.id).in_(ids)))
            await session.commit()
            published += len(rows)


async def sweep_forever(db: Database, publisher: Publisher, interval_s: float = 2.0) -> None:
    """Background safety net: relay what crashed handlers left behind."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await relay(db, publisher)
        except Exception as exc:  # keep sweeping: broker or database may be briefly away
            log.warning("outbox.sweep_failed", error=str(exc))
