"""Starting work: commit the "started" state, announce it, then queue the command.

The order matters. A worker may pick a command up within a millisecond, so the state it checks
(a range ``scanning``, a node ``registering``) must already be committed; the events of the start
go out before the command, so no subscriber can see a worker's outcome before the start; and if
the broker then does not acknowledge the command, the change is undone — nothing is left
half-started — and ``BrokerUnavailableError`` reaches the caller (the API answers 503).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

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
    command: Command | Sequence[Command],
    *,
    revert: Revert,
    started: CloudEvent | Sequence[CloudEvent] = (),
) -> None:
    """Commit the session's started state and queue the command(s); undo on a broker refusal.

    Several commands (a bulk start) go out pipelined, in one round trip. ``started`` are the
    events staged with the start: if the broker refuses, they are withdrawn from the outbox too
    (when the relay did not get them out already).
    """
    commands = [command] if isinstance(command, Command) else list(command)
    await session.commit()
    try:
        await runtime.outbox.relay()
        if len(commands) == 1:
            await runtime.publisher.command(commands[0])
        else:
            await runtime.publisher.commands(commands)
    except BrokerUnavailableError as exc:
        log.error("work.not_queued", commands=[c.msg_id() for c in commands[:20]], error=str(exc))
        await revert(session)
        for event in [started] if isinstance(started, CloudEvent) else started:
            await outbox.withdraw(session, event)
        await session.commit()
        raise
