"""A node's registration: ``discovered``/``registered``/``error`` → ``registering`` →
``registered`` or ``error``.

Every register request bumps ``registration``; the command carries it, so a command of an
earlier request is stale. Event versions come from the node's ``version``, bumped once per status
change, so a redelivered handler stages the same event ids again and JetStream drops the copies.
"""

from __future__ import annotations

from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import catalog
from shared.contracts.commands import NodeRegisterCommand
from shared.core.clock import utcnow
from shared.lifecycle.starting import commit_and_queue
from shared.messaging import outbox
from shared.models import Node, NodeStatus, Server
from shared.platform.runtime import Runtime

# What a start overwrites, put back if the broker refuses the command.
_STARTED_FIELDS = ("status", "error", "auth_profile_id", "version", "registration_started_at")


async def start(session: AsyncSession, runtime: Runtime, node: Node, auth_profile_id: int) -> bool:
    """Put ``node`` into ``registering`` and queue the work; False if it already is."""
    assert node.id is not None
    previous = {name: getattr(node, name) for name in _STARTED_FIELDS}
    flipped = await session.exec(
        update(Node)
        .where(col(Node.id) == node.id, col(Node.status) != NodeStatus.registering)
        .values(
            status=NodeStatus.registering,
            error=None,
            auth_profile_id=auth_profile_id,
            registration=Node.registration + 1,
            registration_started_at=utcnow(),
            version=Node.version + 1,
        )
    )
    if flipped.rowcount == 0:
        return False
    await session.refresh(node)
    started = catalog.node_event(node, "registering")
    outbox.stage(session, started)
    registration = node.registration

    async def revert(s: AsyncSession) -> None:
        await s.exec(
            update(Node)
            .where(col(Node.id) == node.id, col(Node.registration) == registration)
            .values(**previous)
        )

    command = NodeRegisterCommand(node_id=node.id, registration=registration)
    await commit_and_queue(session, runtime, command, revert=revert, started=started)
    return True


async def current(session: AsyncSession, node_id: int, registration: int) -> Node | None:
    """The node if this registration is still the one in progress; otherwise None."""
    # Writing the row first takes its lock, so two deliveries of one command cannot both
    # record an outcome.
    await session.exec(
        update(Node).where(col(Node.id) == node_id).values(registration=Node.registration)
    )
    node = await session.get(Node, node_id)
    if node is None or node.registration != registration or node.status != NodeStatus.registering:
        return None
    return node


def succeed(session: AsyncSession, node: Node, credential_id: int, servers: list[Server]) -> None:
    node.status = NodeStatus.registered
    node.error = None
    node.credential_id = credential_id
    node.registered_at = utcnow()
    node.version += 1
    session.add(node)
    outbox.stage(session, catalog.node_event(node, "registered", servers=[s.id for s in servers]))


def fail(session: AsyncSession, node: Node, reason: str) -> None:
    node.status = NodeStatus.error
    node.error = reason
    node.version += 1
    session.add(node)
    outbox.stage(session, catalog.node_event(node, "error"))


async def fail_current(session: AsyncSession, node_id: int, registration: int, reason: str) -> bool:
    """End this registration in ``error`` with ``reason``; False if it is over or superseded."""
    node = await current(session, node_id, registration)
    if node is None:
        return False
    fail(session, node, reason)
    return True
