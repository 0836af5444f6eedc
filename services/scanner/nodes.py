"""Recording what a probe found: upsert the Node on (ip, port) and stage its events.

A re-scan updates a node, never duplicates it, and never moves the certificate trusted for BMC
work: a registered node stays registered when discovery sees it again. The one status a scan
sets is ``certificate_changed``, when the BMC presents a certificate other than the trusted one
(and the node's auth profile has no TLS policy of its own, see ``shared.bmc.access``).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.scanner.probe import RedfishService
from shared.bmc.access import trust_on_first_use
from shared.contracts import catalog
from shared.lifecycle import node as node_lifecycle
from shared.messaging import outbox
from shared.models import AuthProfile, Node, NodeStatus

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
    for field in changed:
        setattr(node, field, getattr(service, field))
    if service.fingerprint is not None:
        node_lifecycle.saw_certificate(node, service.fingerprint)
    node.last_seen = now
    node.scan_range_id = scan_range_id
    session.add(node)
    if changed:
        node.version += 1
        await session.flush()
        outbox.stage(session, catalog.node_event(node, "updated", changed=changed))
    if (
        node.fingerprint_changed
        and node.fingerprint is not None
        and node.status != NodeStatus.certificate_changed
        and await _trust_decides(session, node)
    ):
        node_lifecycle.certificate_changed(session, node, node.fingerprint)
    return node


async def _trust_decides(session: AsyncSession, node: Node) -> bool:
    profile = await session.get(AuthProfile, node.auth_profile_id) if node.auth_profile_id else None
    return trust_on_first_use(profile)
