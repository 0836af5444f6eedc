"""The API's side of the broker: queueing work, and announcing changes that are already saved.

Starting work that changes state first (a scan run, a registration) goes through
``shared.lifecycle``; a broker that refuses the command there raises ``BrokerUnavailableError``,
which the API answers with 503 (``services/api/errors.py``).
"""

from __future__ import annotations

from services.api.errors import documented
from shared.contracts.commands import Command
from shared.core.log import get_logger
from shared.messaging.publish import BrokerUnavailableError
from shared.platform.runtime import Runtime

log = get_logger(__name__)

# The OpenAPI response every route that queues work documents.
BROKER_UNAVAILABLE = documented(503, "The broker did not accept the work")


async def publish(runtime: Runtime, commands: list[Command]) -> None:
    """Queue commands that change no state up front (e.g. a refresh); 503 if refused."""
    for command in commands:
        await runtime.publisher.command(command)


async def announce(runtime: Runtime) -> None:
    """Relay the events of a change that is already committed. A broker outage must not turn a
    saved change into an error (the client would retry and duplicate it): the outbox sweep
    delivers the events when the broker is back."""
    try:
        await runtime.outbox.relay()
    except BrokerUnavailableError as exc:
        log.warning("events.delayed", error=str(exc))
