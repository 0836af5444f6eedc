"""Starting work: commit the "started" state, queue the command, then announce the start.

The order matters. A worker may pick a command up within a millisecond, so the state it checks
(a range ``scanning``, a node ``registering``) must already be committed. The start's events are
relayed only once the broker acknowledged the command: if it does not, the change is undone and
the events are withdrawn from the outbox — nothing is left half-started, no subscriber hears of a
start whose work was never queued — and ``BrokerUnavailableError`` reaches the caller (the API
answers 503). Relaying after the command costs no ordering: the events were committed with the
start, before any outcome of the work could be, and the outbox relays each entity's events in
commit order, so no subscriber sees a worker's outcome before the start.
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
    events staged with the start: if the broker refuses the command, they are withdrawn from
    the outbox with the rest of the start. Once the command is queued the start stands; events
    a failed relay leaves behind go out with the next relay or sweep.
    """
    commands = [command] if isinstance(command, Command) else list(command)
    await session.commit()
    try:
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
    try:
        await runtime.outbox.relay()
    except BrokerUnavailableError as exc:
        log.warning("work.events_deferred", error=str(exc))
