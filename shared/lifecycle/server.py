"""What Racksmith learns about a server outside registration's and inventory's bookkeeping: its
power state, read by a job or an inventory collection, and the event that says it changed."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import catalog
from shared.core.clock import utcnow
from shared.messaging import outbox
from shared.models import Server


def observe_power(session: AsyncSession, server: Server, power_state: str | None) -> bool:
    """Record the power state just read from the BMC; ``server.power_changed`` if it differs.

    The caller holds the server's row lock and read the row after taking it (the job engine's
    and the inventory's loaders do): the version is moved on in Python, so a copy read before
    another writer committed would hand out that writer's version again."""
    if power_state == server.power_state:
        return False
    previous = server.power_state
    server.power_state = power_state
    server.version += 1
    server.updated_at = utcnow()
    session.add(server)
    outbox.stage(
        session, catalog.server_event(server, "power_changed", previous_power_state=previous)
    )
    return True
