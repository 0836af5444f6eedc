"""Publishing onto JetStream with a deterministic ``Nats-Msg-Id`` and a required PubAck."""

from __future__ import annotations

from faststream.nats import NatsBroker
from pydantic import BaseModel

from shared.messaging.commands import Command
from shared.messaging.events import CloudEvent
from shared.messaging.streams import COMMANDS_STREAM, EVENTS_STREAM

PUBLISH_TIMEOUT_S = 5.0


class BrokerUnavailableError(RuntimeError):
    """The broker did not acknowledge a publish; the caller must not report success."""


class Publisher:
    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker

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
            content_type="application/cloudevents+json",
        )

    async def _publish(
        self,
        body: bytes,
        subject: str,
        stream: str,
        msg_id: str,
        *,
        content_type: str = "application/json",
    ) -> None:
        try:
            await self.broker.publish(
                body,
                subject,
                headers={"Nats-Msg-Id": msg_id, "content-type": content_type},
                stream=stream,
                timeout=PUBLISH_TIMEOUT_S,
            )
        except Exception as exc:  # any failure means "not durably accepted"
            raise BrokerUnavailableError(f"NATS did not accept {subject}: {exc}") from exc
