"""A registration's servers: one per ComputerSystem, upserted on (node, system path).

The node's own status and events are its lifecycle's (``shared.lifecycle.node``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bmc.facts import system_facts
from shared.contracts import catalog
from shared.contracts.commands import NodeRegisterCommand
from shared.core.db import Database
from shared.messaging import outbox
from shared.models import Node, NodeStatus, Server
from shared.redfish import ComputerSystem


def default_name(system: ComputerSystem) -> str | None:
    """What a person tells servers apart by: the host name when the BMC knows it, else model and
    serial number. Redfish's ``Name`` is the schema's label ("System", "Computer System") on
    most BMCs — every Dell of a rack would be called the same."""
    if system.host_name:
        return system.host_name
    named = " ".join(part for part in (system.model, system.serial_number) if part)
    return named or system.name


async def upsert_servers(
    session: AsyncSession, node: Node, systems: list[ComputerSystem]
) -> list[Server]:
    assert node.id is not None
    existing = {
        s.system_path: s
        for s in (await session.exec(select(Server).where(col(Server.node_id) == node.id))).all()
    }
    now = datetime.now(UTC)
    servers = []
    for system in systems:
        server = existing.get(system.odata_id)
        created = server is None
        if server is None:
            server = Server(node_id=node.id, system_path=system.odata_id)
        for column, value in system_facts(system).items():
            setattr(server, column, value)
        if created or not server.name:
            # A name an operator gave the server survives re-registration.
            server.name = default_name(system)
        server.bmc_url = node.url
        server.updated_at = now
        session.add(server)
        await session.flush()
        if created:
            outbox.stage(session, catalog.server_event(server, "created"))
        servers.append(server)
    return servers


async def registered_servers(db: Database, cmd: NodeRegisterCommand) -> list[int]:
    """The servers of the node if ``cmd`` is the registration that succeeded; else none."""
    async with db.session() as session:
        node = await session.get(Node, cmd.node_id)
        if node is None or node.registration != cmd.registration:
            return []
        if node.status != NodeStatus.registered:
            return []
        ids = (await session.exec(select(Server.id).where(col(Server.node_id) == node.id))).all()
    return [i for i in ids if i is not None]
