"""Recording what a probe found: upsert the Node on (ip, port) and stage its events.

A re-scan updates a node, never duplicates it, and never touches its lifecycle status: a
registered node stays registered when discovery sees it again.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.scanner.probe import RedfishService
from shared.contracts import catalog
from shared.messaging import outbox
from shared.models import Node

# Fields discovery owns; a change in any of them is reported in the node's `updated` event.
_DISCOVERED_FIELDS = ("url", "vendor", "product", "redfish_version", "uuid", "fingerprint")


async def record(
    session: AsyncSession, service: RedfishService, scan_range_id: int, now: datetime
) -> Node:
    node = (
        await session.exec(
            select(Node).where(col(Node.ip) == service.ip, col(Node.port) == service.port)
        )
    ).one_or_none()
    if node is None:
        node = Node(
            ip=service.ip,
            port=service.port,
            url=service.url,
            vendor=service.vendor,
            product=service.product,
            redfish_version=service.redfish_version,
            uuid=service.uuid,
            fingerprint=service.fingerprint,
            scan_range_id=scan_range_id,
            first_seen=now,
            last_seen=now,
        )
        session.add(node)
        await session.flush()
        outbox.stage(session, catalog.node_event(node, "discovered"))
        return node

    changed = [f for f in _DISCOVERED_FIELDS if getattr(node, f) != getattr(service, f)]
    fingerprint_changed = "fingerprint" in changed and node.fingerprint is not None
    for field in changed:
        setattr(node, field, getattr(service, field))
    node.last_seen = now
    node.scan_range_id = scan_range_id
    if fingerprint_changed:
        # Sticky until someone looks: a BMC whose certificate changed may not be the same BMC.
        node.fingerprint_changed = True
    if changed:
        node.version += 1
        session.add(node)
        await session.flush()
        outbox.stage(
            session,
            catalog.node_event(
                node, "updated", changed=changed, fingerprint_changed=fingerprint_changed
            ),
        )
    else:
        session.add(node)
    return node
