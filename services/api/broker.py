"""The API's side of the broker: queueing work, and announcing changes that are already saved.

Starting work that changes state first (a scan run, a registration) goes through
``shared.lifecycle``; a broker that refuses the command there raises ``BrokerUnavailableError``,
which the API answers with 503 (``services/api/errors.py``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from services.api.errors import BROKER_DOWN
from shared.contracts.commands import Command
from shared.core.log import get_logger
from shared.messaging.publish import BrokerUnavailableError
from shared.platform.runtime import Runtime

log = get_logger(__name__)


class BrokerDown(BaseModel):
    """503: the broker refused the work. A bulk request is all or nothing: none of it started."""

    detail: str = Field(examples=[BROKER_DOWN])


# The OpenAPI response every route that queues work documents.
BROKER_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": BrokerDown, "description": "The broker did not accept the work"}
}


async def publish(runtime: Runtime, commands: list[Command]) -> None:
    """Queue commands that change no state up front (e.g. a refresh), pipelined in one round
    trip; 503 if refused."""
    if len(commands) == 1:
        await runtime.publisher.command(commands[0])
    elif commands:
        await runtime.publisher.commands(commands)


async def announce(runtime: Runtime) -> None:
    """Relay the events of a change that is already committed. A broker outage must not turn a
    saved change into an error (the client would retry and duplicate it): the outbox sweep
    delivers the events when the broker is back."""
    try:
        await runtime.outbox.relay()
    except BrokerUnavailableError as exc:
        log.warning("events.delayed", error=str(exc))
