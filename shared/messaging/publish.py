"""Publishing onto JetStream with a deterministic ``Nats-Msg-Id`` and a required PubAck."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel

from shared.contracts.commands import Command
from shared.contracts.events import CloudEvent
from shared.messaging.streams import COMMANDS_STREAM, EVENTS_STREAM
from shared.observability import tracing
from shared.observability.messaging import count_pipelined_publishes

PUBLISH_TIMEOUT_S = 5.0
EVENT_CONTENT_TYPE = "application/cloudevents+json"
JSON = "application/json"


class BrokerUnavailableError(RuntimeError):
    """The broker did not acknowledge a publish; the caller must not report success."""


@dataclass(frozen=True)
class _Item:
    subject: str
    body: bytes
    stream: str
    msg_id: str
    content_type: str
    headers: Mapping[str, str]


class Publisher:
    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker
        self._js: JetStreamContext | None = None

    def attach(self, nats: NatsClient) -> None:
        """Use the broker's connection for pipelined event batches (after it connected)."""
        self._js = nats.jetstream()

    async def events(
        self, events: Sequence[CloudEvent], headers: Sequence[Mapping[str, str]] = ()
    ) -> None:
        """Publish ``events`` in order, waiting once for all their PubAcks; ``headers``, if
        given, adds headers per event (its trace context).

        The outbox relay publishes while it holds its claim on the rows (on SQLite, the write
        lock): one round trip per batch instead of one per event keeps that short. One
        connection delivers in order, so the stream stores them in order.
        """
        extra = list(headers) or [{}] * len(events)
        await self._pipelined(
            [
                _Item(
                    event.nats_subject,
                    event.model_dump_json().encode(),
                    EVENTS_STREAM,
                    event.id,
                    EVENT_CONTENT_TYPE,
                    added,
                )
                for event, added in zip(events, extra, strict=True)
            ],
            "the events",
        )

    async def commands(self, commands: Sequence[Command]) -> None:
        """Publish ``commands`` pipelined (a bulk request's work in one round trip), in the
        caller's trace (the worker's handler continues it)."""
        context = tracing.current_context()
        await self._pipelined(
            [
                _Item(
                    c.subject,
                    c.model_dump_json().encode(),
                    COMMANDS_STREAM,
                    c.msg_id(),
                    JSON,
                    context,
                )
                for c in commands
            ],
            "the commands",
        )
        if self._js is not None:  # past FastStream's middleware, which counts the others
            count_pipelined_publishes([c.subject for c in commands])

    async def _pipelined(self, items: list[_Item], what: str) -> None:
        if self._js is None:
            for item in items:
                await self._publish(
                    item.body,
                    item.subject,
                    item.stream,
                    item.msg_id,
                    content_type=item.content_type,
                    headers=item.headers,
                )
            return
        acks: list[asyncio.Future[PubAck]] = []
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                for item in items:
                    acks.append(
                        await self._js.publish_async(
                            item.subject,
                            item.body,
                            stream=item.stream,
                            headers={
                                **item.headers,
                                "Nats-Msg-Id": item.msg_id,
                                "content-type": item.content_type,
                            },
                        )
                    )
                await asyncio.gather(*acks)
        except Exception as exc:  # any failure means "not durably accepted"
            raise BrokerUnavailableError(f"NATS did not accept {what}: {exc!r}") from exc
        finally:
            # An ack that never comes would hold one of the client's pending-publish slots for
            # good; cancelling gives it back (the caller publishes these again or undoes them).
            for ack in acks:
                ack.cancel()

    async def command(self, command: Command) -> None:
        await self.raw_command(command.subject, command, msg_id=command.msg_id())

    async def raw_command(self, subject: str, payload: BaseModel, *, msg_id: str) -> None:
        await self._publish(payload.model_dump_json().encode(), subject, COMMANDS_STREAM, msg_id)

    async def event(self, event: CloudEvent) -> None:
        await self._publish(
            event.model_dump_json().encode(),
            event.nats_subject,
            EVENTS_STREAM,
            event.id,
            content_type=EVENT_CONTENT_TYPE,
        )

    async def _publish(
        self,
        body: bytes,
        subject: str,
        stream: str,
        msg_id: str,
        *,
        content_type: str = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            await self.broker.publish(
                body,
                subject,
                headers={**(headers or {}), "Nats-Msg-Id": msg_id, "content-type": content_type},
                stream=stream,
                timeout=PUBLISH_TIMEOUT_S,
            )
        except Exception as exc:  # any failure means "not durably accepted"
            raise BrokerUnavailableError(f"NATS did not accept {subject}: {exc}") from exc
