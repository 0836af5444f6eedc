"""Starting work: commit the "started" state, announce it, then queue the command.

The order matters. A worker may pick a command up within a millisecond, so the state it checks
(a range ``scanning``, a node ``registering``) must already be committed; the events of the start
go out before the command, so no subscriber can see a worker's outcome before the start; and if
the broker then does not acknowledge the command, the change is undone — nothing is left
half-started — and ``BrokerUnavailableError`` reaches the caller (the API answers 503).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts.commands import Command
from shared.contracts.events import CloudEvent
from shared.core.log import get_logger
from shared.messaging import outbox
from shared.messaging.publish import BrokerUnavailableError
from shared.platform.runtime import Runtime

log = get_logger(__name__)

Revert = Callable[[AsyncSession], Awaitable[None]]


async def commit_and_queue(
    session: AsyncSession,
    runtime: Runtime,
    command: Command,
    *,
    revert: Revert,
    started: CloudEvent | None = None,
) -> None:
    """Commit the session's started state and queue ``command``; undo on a broker refusal.

    ``started`` is the event staged with the start: if the broker refuses, it is withdrawn from
    the outbox too (when the relay did not get it out already).
    """
    await session.commit()
    try:
        await runtime.outbox.relay()
        await runtime.publisher.command(command)
    except BrokerUnavailableError as exc:
        log.error("work.not_queued", command=command.msg_id(), error=str(exc))
        await revert(session)
        if started is not None:
            await outbox.withdraw(session, started)
        await session.commit()
        raise
