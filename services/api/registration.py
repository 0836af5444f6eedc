"""Starting registrations and waiting for their outcome, for the ``register/`` endpoints.

Scripts written for the guide go straight from ``register/`` to listing servers, so the endpoint
waits (bounded) for the registrar's verdict. It does so by listening for the node's events on
NATS — the API still never talks to a BMC — subscribing before the command is published so the
outcome cannot slip past.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.broker import commit_and_publish
from shared.contracts import catalog
from shared.contracts.commands import NodeRegisterCommand
from shared.contracts.events import make_event
from shared.contracts.subjects import EVENT_PREFIX
from shared.messaging import outbox
from shared.models import Node, NodeStatus, OutboxEvent, Server
from shared.models.discovery import NodePublic
from shared.platform.runtime import Runtime

FINAL_CHANGES = ("registered", "error")


class NodeRegistration(NodePublic):
    """A node as the API shows it, plus the ids of the servers behind it."""

    servers: list[int]


async def start(session: AsyncSession, runtime: Runtime, node: Node, auth_profile_id: int) -> bool:
    """Put ``node`` into ``registering`` and queue the work; False if it already is."""
    assert node.id is not None
    previous = {
        name: getattr(node, name) for name in ("status", "error", "auth_profile_id", "version")
    }
    flipped = await session.exec(
        update(Node)
        .where(col(Node.id) == node.id, col(Node.status) != NodeStatus.registering)
        .values(
            status=NodeStatus.registering,
            error=None,
            auth_profile_id=auth_profile_id,
            registration=Node.registration + 1,
            version=Node.version + 1,
        )
    )
    if flipped.rowcount == 0:
        return False
    await session.refresh(node)
    outbox.stage(session, catalog.node_event(node, "registering"))
    event_id = make_event("node", node.id, "registering", version=node.version, data={}).id
    registration = node.registration

    async def revert(s: AsyncSession) -> None:
        await s.exec(
            update(Node)
            .where(col(Node.id) == node.id, col(Node.registration) == registration)
            .values(**previous)
        )
        await s.exec(delete(OutboxEvent).where(col(OutboxEvent.event_id) == event_id))

    await commit_and_publish(
        session,
        runtime,
        NodeRegisterCommand(node_id=node.id, registration=registration),
        revert,
    )
    return True


class OutcomeWatch:
    """Collects which of a set of nodes reached a final registration state."""

    def __init__(self, node_ids: Iterable[int]) -> None:
        self.pending = set(node_ids)
        self._all_done = asyncio.Event()
        if not self.pending:
            self._all_done.set()

    async def _on_event(self, message: Msg) -> None:
        # Subject: racksmith.evt.node.<id>.<change>
        node_id = int(message.subject.split(".")[3])
        self.pending.discard(node_id)
        if not self.pending:
            self._all_done.set()

    async def wait(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._all_done.wait()
        except TimeoutError:
            return False
        return True


@asynccontextmanager
async def watch_outcomes(
    nats: NatsClient | None, node_ids: Iterable[int]
) -> AsyncIterator[OutcomeWatch]:
    watch = OutcomeWatch(node_ids)
    if nats is None:
        yield watch
        return
    subscriptions = [
        await nats.subscribe(f"{EVENT_PREFIX}.node.*.{change}", cb=watch._on_event)
        for change in FINAL_CHANGES
    ]
    await nats.flush()  # the server knows our interest before any command goes out
    try:
        yield watch
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()


async def results(session: AsyncSession, nodes: list[Node]) -> list[NodeRegistration]:
    """Fresh state of ``nodes`` with their server ids (one query for all servers)."""
    for node in nodes:
        await session.refresh(node)
    ids = [n.id for n in nodes]
    pairs = (
        await session.exec(
            select(Server.node_id, Server.id)
            .where(col(Server.node_id).in_(ids))
            .order_by(col(Server.id))
        )
    ).all()
    servers: dict[int, list[int]] = {}
    for node_id, server_id in pairs:
        if node_id is not None and server_id is not None:
            servers.setdefault(node_id, []).append(server_id)
    return [
        NodeRegistration(**NodePublic.of(n).model_dump(), servers=servers.get(n.id or 0, []))
        for n in nodes
    ]
