"""Waiting for registrations to finish, for the ``register/`` endpoints (started by
``shared.lifecycle.node``).

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
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts.subjects import EVENT_PREFIX
from shared.models import Node, Server
from shared.models.discovery import NodePublic

FINAL_CHANGES = ("registered", "error", "certificate_changed")


class NodeRegistration(NodePublic):
    """A node as the API shows it, plus the ids of the servers behind it."""

    servers: list[int]


class OutcomeWatch:
    """Collects which of a set of nodes reached a final registration state."""

    def __init__(self, node_ids: Iterable[int]) -> None:
        self.pending = set(node_ids)
        self._all_done = asyncio.Event()
        if not self.pending:
            self._all_done.set()

    async def _on_event(self, message: Msg) -> None:
        # Subject: racksmith.evt.node.<id>.<change>
        self.settled(int(message.subject.split(".")[3]))

    def settled(self, node_id: int) -> None:
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
