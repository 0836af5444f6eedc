"""Recording a collected inventory: changed families replaced as a set, server facts refreshed,
and one event saying what changed. A failed collection keeps the previous inventory and marks the
server with the error."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import col, delete, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.inventory.families import FAMILIES, content_hash
from shared.bmc.facts import firmware_facts, system_facts
from shared.contracts import catalog
from shared.lifecycle import compliance
from shared.lifecycle.server import observe_power
from shared.messaging import outbox
from shared.models import InventoryErrorCode, InventoryStatus, Server
from shared.redfish.inventory import Inventory

SYSTEM = "system"


async def locked_server(session: AsyncSession, server_id: int) -> Server | None:
    # Writing the row first serialises two collections of one server (row lock / write lock).
    await session.exec(
        update(Server).where(col(Server.id) == server_id).values(version=Server.version)
    )
    return await session.get(Server, server_id, populate_existing=True)


async def record_inventory(
    session: AsyncSession, server: Server, inventory: Inventory
) -> list[str]:
    """Store ``inventory`` for ``server``; returns the families that changed."""
    assert server.id is not None
    hashes: dict[str, str] = {}
    changed: list[str] = []
    facts = system_facts(inventory.system) | firmware_facts(inventory.system, inventory.firmware)
    hashes[SYSTEM] = content_hash(facts)
    # First, so the inventoried event below shows the power state it announces.
    observe_power(session, server, facts.pop("power_state"))
    for column, value in facts.items():
        setattr(server, column, value)
    for family in FAMILIES:
        rows = family.rows(inventory)
        hashes[family.name] = content_hash(rows)
        if server.inventory_hashes.get(family.name) == hashes[family.name]:
            continue
        table = family.table
        await session.exec(delete(table).where(col(table.server_id) == server.id))  # type: ignore[attr-defined]
        session.add_all(table(server_id=server.id, **row) for row in rows)
        changed.append(family.name)
    if server.inventory_hashes.get(SYSTEM) != hashes[SYSTEM]:
        changed.append(SYSTEM)
    now = datetime.now(UTC)
    server.inventory_hashes = hashes
    server.inventory_status = InventoryStatus.collected
    server.inventory_error = None
    server.inventory_error_code = None
    server.last_inventory_at = now
    server.inventory_attempted_at = now
    server.updated_at = now
    if changed:
        server.version += 1
        session.add(server)
        await session.flush()
        outbox.stage(session, catalog.server_event(server, "inventoried", changed=changed))
    session.add(server)
    if {"firmwares", SYSTEM} & set(changed):
        # The running firmware, or the model and manufacturer that scope baselines, changed.
        await compliance.recompute(session, server_ids=[server.id])
    return changed


def record_failure(
    session: AsyncSession, server: Server, reason: str, code: InventoryErrorCode
) -> None:
    server.inventory_attempted_at = datetime.now(UTC)
    server.inventory_status = InventoryStatus.error
    server.inventory_error = reason
    server.inventory_error_code = code
    server.version += 1
    session.add(server)
    outbox.stage(session, catalog.server_event(server, "inventory_failed"))
