"""Every event type Racksmith emits, in one place, and the one way to stage each.

An event's ``data`` is the entity as the REST API shows it (its ``…Public`` model) plus what
changed; its version is the entity's change counter (``version`` column, or the scan run), so the
same change always has the same event id.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.messaging import outbox
from shared.messaging.events import make_event
from shared.models import Node, ScanRange, Server
from shared.models.discovery import NodePublic, ScanRangePublic
from shared.models.servers import ServerPublic


@dataclass(frozen=True)
class EventType:
    entity: str
    change: str
    payload: type[BaseModel]
    description: str

    @property
    def type(self) -> str:
        return f"io.racksmith.{self.entity}.{self.change}"


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("scan_range", "started", ScanRangePublic, "A scan run began."),
    EventType("scan_range", "completed", ScanRangePublic, "A scan run ended; counts in data."),
    EventType("scan_range", "failed", ScanRangePublic, "A scan run ended in error."),
    EventType("node", "discovered", NodePublic, "A BMC endpoint was found for the first time."),
    EventType(
        "node",
        "updated",
        NodePublic,
        "Discovery saw different facts; `changed` lists them, `fingerprint_changed` flags a new "
        "certificate.",
    ),
    EventType("node", "registering", NodePublic, "Registration was requested."),
    EventType("node", "registered", NodePublic, "Registration succeeded; `servers` lists ids."),
    EventType("node", "error", NodePublic, "Registration failed; `error` says why."),
    EventType("server", "created", ServerPublic, "A ComputerSystem became a managed server."),
    EventType(
        "server",
        "inventoried",
        ServerPublic,
        "A collection found changes; `changed` lists the families (system, processors, memory, "
        "ethernet_interfaces, storages, firmwares).",
    ),
    EventType(
        "server",
        "inventory_failed",
        ServerPublic,
        "A collection failed; `inventory_error` says why, the previous inventory is kept.",
    ),
)


def stage_scan_range_event(session: AsyncSession, scan_range: ScanRange, change: str) -> None:
    assert scan_range.id is not None
    data = ScanRangePublic.of(scan_range).model_dump(mode="json")
    outbox.stage(
        session, make_event("scan_range", scan_range.id, change, version=scan_range.run, data=data)
    )


def stage_node_event(session: AsyncSession, node: Node, change: str, **extra: object) -> None:
    assert node.id is not None
    data = NodePublic.of(node).model_dump(mode="json") | extra
    outbox.stage(session, make_event("node", node.id, change, version=node.version, data=data))


def stage_server_event(session: AsyncSession, server: Server, change: str, **extra: object) -> None:
    assert server.id is not None
    data = ServerPublic.of(server).model_dump(mode="json") | extra
    outbox.stage(
        session, make_event("server", server.id, change, version=server.version, data=data)
    )
