"""Periodic re-collection, spread over time.

Every tick, each inventory replica queues the servers whose inventory is older than the interval,
at most ``servers * tick / interval`` of them — so a fleet is re-collected at an even pace instead
of all at once. Replicas queue the same servers for the same time slot, and the slot is part of
the command's message id, so JetStream keeps one copy.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_
from sqlmodel import col, select

from shared.contracts.commands import ServerInventoryCommand
from shared.core.db import Database
from shared.core.log import get_logger
from shared.core.settings import Settings
from shared.messaging.publish import Publisher
from shared.models import Server
from shared.platform.runtime import Runtime

log = get_logger(__name__)

# A server that was never collected is queued by its registration; give that a head start.
FIRST_COLLECTION_GRACE = timedelta(minutes=5)


async def queue_due(
    db: Database, publisher: Publisher, settings: Settings, now: datetime | None = None
) -> list[int]:
    """Queue the servers due for re-collection now; returns their ids."""
    interval = settings.inventory_interval_s
    now = now or datetime.now(UTC)
    managed = col(Server.node_id).is_not(None)
    # By the last attempt, not the last success: a server whose BMC keeps failing is retried
    # once per interval like everyone else instead of taking every tick's budget.
    due = or_(
        col(Server.inventory_attempted_at) <= now - timedelta(seconds=interval),
        (col(Server.inventory_attempted_at).is_(None))
        & (col(Server.created_at) <= now - FIRST_COLLECTION_GRACE),
    )
    async with db.session() as session:
        total = (await session.exec(select(func.count()).where(managed))).one()
        budget = max(1, math.ceil(total * settings.inventory_tick_s / interval))
        ids = (
            await session.exec(
                select(Server.id)
                .where(managed, due)
                .order_by(col(Server.inventory_attempted_at).asc().nulls_first(), col(Server.id))
                .limit(budget)
            )
        ).all()
    slot = int(now.timestamp() // interval)
    for server_id in ids:
        if server_id is not None:
            await publisher.command(
                ServerInventoryCommand(server_id=server_id, token=f"sched:{slot}")
            )
    return [i for i in ids if i is not None]


async def schedule_forever(runtime: Runtime) -> None:
    settings = runtime.settings
    if not settings.inventory_interval_s:
        return
    while True:
        await asyncio.sleep(settings.inventory_tick_s)
        try:
            queued = await queue_due(runtime.db, runtime.publisher, settings)
        except Exception as exc:  # keep scheduling: the database or broker may be briefly away
            log.warning("inventory.schedule_failed", error=str(exc))
            continue
        if queued:
            log.info("inventory.scheduled", servers=len(queued))
