"""Handing work to the workers: commit the "started" state, then publish the command.

The order matters. A worker may pick a command up within a millisecond, so the state it checks
(a range `scanning`, a node `registering`) must already be committed; and if the broker then does
not acknowledge the command, the change is undone and the client gets 503 — nothing is left
half-started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.errors import APIError, documented
from shared.contracts.commands import Command
from shared.core.log import get_logger
from shared.messaging.publish import BrokerUnavailableError
from shared.platform.runtime import Runtime

log = get_logger(__name__)

Revert = Callable[[AsyncSession], Awaitable[None]]

# The OpenAPI response every route that queues work documents.
BROKER_UNAVAILABLE = documented(503, "The broker did not accept the work")


async def commit_and_publish(
    session: AsyncSession, runtime: Runtime, command: Command, revert: Revert
) -> None:
    await session.commit()
    try:
        # Events of the started state (e.g. `registering`) go out before the command, so no
        # subscriber can see the worker's outcome before the start.
        await runtime.outbox.relay()
        await runtime.publisher.command(command)
    except BrokerUnavailableError as exc:
        log.error("dispatch.broker_unavailable", command=command.msg_id(), error=str(exc))
        await revert(session)
        await session.commit()
        raise APIError(503, "The message broker is unavailable; the work was not started.") from exc


async def publish(runtime: Runtime, commands: list[Command]) -> None:
    """Publish commands that change no state up front (e.g. a refresh); 503 if refused."""
    try:
        for command in commands:
            await runtime.publisher.command(command)
    except BrokerUnavailableError as exc:
        log.error("dispatch.broker_unavailable", error=str(exc))
        raise APIError(503, "The message broker is unavailable; the work was not queued.") from exc


async def announce(runtime: Runtime) -> None:
    """Relay the events of a change that is already committed. A broker outage must not turn a
    saved change into an error (the client would retry and duplicate it): the outbox sweep
    delivers the events when the broker is back."""
    try:
        await runtime.outbox.relay()
    except BrokerUnavailableError as exc:
        log.warning("events.delayed", error=str(exc))
