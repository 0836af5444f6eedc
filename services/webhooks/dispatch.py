"""From events to deliveries: the webhooks worker's durable consumer on RACKSMITH_EVENTS.

Each batch of events becomes, in one transaction, a pending delivery per matching active webhook;
the events are acked only after the commit. A worker that dies in between loses nothing: the
batch is redelivered, and the unique (webhook, event) key makes recording it again a no-op. A
webhook receives the events that happened after it was created (not the stream's history).

This reads the pull subscription with nats-py's ``fetch`` rather than a FastStream subscriber:
FastStream's batch mode waits for a full batch or its timeout, which would add that timeout to
every event in quiet times; ``fetch`` returns as soon as anything is there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import suppress

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from services.webhooks import filters
from shared.contracts.events import CloudEvent
from shared.core.clock import utcnow
from shared.core.db import Database
from shared.core.log import get_logger
from shared.messaging.consumer import retry_delay
from shared.messaging.streams import WEBHOOKS
from shared.models import DeliveryStatus, Webhook, WebhookDelivery
from shared.platform.runtime import Runtime

log = get_logger(__name__)

# How long one fetch waits for events before asking again.
FETCH_WAIT_S = 5.0
RESUBSCRIBE_DELAY_S = 1.0


async def record(db: Database, events: Sequence[tuple[CloudEvent, int]]) -> int:
    """Pending deliveries for (event, stream sequence) pairs; returns how many rows it offered
    (already recorded ones are skipped by the database)."""
    now = utcnow()
    async with db.session() as session:
        hooks = (
            await session.exec(
                select(Webhook.id, Webhook.event_types, Webhook.created_at).where(
                    col(Webhook.active)
                )
            )
        ).all()
        rows = [
            {
                "webhook_id": hook_id,
                "event_id": event.id,
                "event_type": event.type,
                "subject": event.subject,
                "stream_sequence": sequence,
                "event": event.model_dump(mode="json"),
                "status": DeliveryStatus.pending,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for event, sequence in events
            for hook_id, event_types, created_at in hooks
            if filters.matches(event_types, event.type) and event.time >= created_at
        ]
        if rows:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            await session.exec(
                insert(WebhookDelivery).on_conflict_do_nothing(
                    index_elements=["webhook_id", "event_id"]
                ),
                params=rows,
            )
        await session.commit()
    return len(rows)


class Dispatcher:
    """Consumes the ``webhooks`` durable consumer; ``on_recorded`` wakes the delivery loop."""

    def __init__(self, runtime: Runtime, on_recorded: Callable[[], None]) -> None:
        self.runtime = runtime
        self.on_recorded = on_recorded

    async def run(self) -> None:
        while True:
            try:
                await self._consume()
            except Exception as exc:  # NATS away or the consumer missing: bind again shortly
                log.warning("webhooks.consumer_unavailable", error=str(exc))
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)

    async def _consume(self) -> None:
        assert self.runtime.nats is not None, "connect the runtime first"
        js = self.runtime.nats.jetstream()
        subscription = await js.pull_subscribe_bind(WEBHOOKS.durable, stream=WEBHOOKS.stream)
        try:
            while True:
                try:
                    messages = await subscription.fetch(
                        WEBHOOKS.max_ack_pending, timeout=FETCH_WAIT_S
                    )
                except TimeoutError:
                    continue
                await self.handle(messages)
        finally:
            with suppress(Exception):  # a closed connection has nothing left to unsubscribe
                await subscription.unsubscribe()

    async def handle(self, messages: Sequence[Msg]) -> None:
        events: list[tuple[Msg, CloudEvent]] = []
        for message in messages:
            try:
                events.append((message, CloudEvent.model_validate_json(message.data)))
            except ValidationError as exc:
                # Not a CloudEvent: no retry will make it one.
                log.error(
                    "webhooks.invalid_event",
                    subject=message.subject,
                    errors=exc.errors(include_input=False),
                )
                await message.term()
        try:
            recorded = await record(
                self.runtime.db,
                [(event, message.metadata.sequence.stream) for message, event in events],
            )
        except Exception as exc:  # the database may be briefly away: JetStream keeps the events
            log.warning("webhooks.dispatch_failed", error=str(exc), events=len(events))
            for message, _ in events:
                await message.nak(delay=retry_delay(message.metadata.num_delivered or 1))
            return
        for message, _ in events:
            await message.ack()
        if recorded:
            self.on_recorded()
