"""What the ``register/`` endpoints answer (registrations are started by
``shared.lifecycle.node``).

Scripts written for the guide go straight from ``register/`` to listing servers, so the endpoint
waits (bounded, `services.api.waiting`) for the registrar's verdict and answers with the nodes
and the servers behind them.
"""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.lifecycle import node as node_lifecycle
from shared.models import Node, Server
from shared.models.discovery import NodePublic

FINAL_CHANGES = ("registered", "error", "certificate_changed")


class NodeRegistration(NodePublic):
    """A node as the API shows it, plus the ids of the servers behind it."""

    servers: list[int]


async def results(session: AsyncSession, nodes: list[Node]) -> list[NodeRegistration]:
    """Fresh state of ``nodes`` with their server ids (one query for all servers)."""
    ids = [n.id for n in nodes if n.id is not None]
    await node_lifecycle.refreshed(session, ids)
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
