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
from shared.models import Node, Pool, ScanRange, Server, Switch
from shared.models.discovery import NodePublic, ScanRangePublic
from shared.models.servers import ServerPublic
from shared.models.switches import SwitchPublic


class PoolEventData(BaseModel):
    id: int
    name: str
    description: str
    group: int | None
    parent: int | None


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
    EventType("server", "assigned", ServerPublic, "The server was put in a pool."),
    EventType(
        "server",
        "unassigned",
        ServerPublic,
        "The server left its pool; `previous_pool` says which.",
    ),
    EventType("switch", "assigned", SwitchPublic, "The switch was put in a pool."),
    EventType(
        "switch",
        "unassigned",
        SwitchPublic,
        "The switch left its pool; `previous_pool` says which.",
    ),
    EventType("pool", "created", PoolEventData, "A pool was created."),
    EventType(
        "pool", "updated", PoolEventData, "A pool's name, description, group or parent changed."
    ),
    EventType("pool", "deleted", PoolEventData, "A pool was deleted."),
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


def stage_pool_event(session: AsyncSession, pool: Pool, change: str) -> None:
    assert pool.id is not None
    data = PoolEventData(
        id=pool.id,
        name=pool.name,
        description=pool.description,
        group=pool.group_id,
        parent=pool.parent_id,
    ).model_dump(mode="json")
    outbox.stage(session, make_event("pool", pool.id, change, version=pool.version, data=data))


def stage_switch_event(session: AsyncSession, switch: Switch, change: str, **extra: object) -> None:
    assert switch.id is not None
    data = SwitchPublic.of(switch).model_dump(mode="json") | extra
    outbox.stage(
        session, make_event("switch", switch.id, change, version=switch.version, data=data)
    )


def stage_server_event(session: AsyncSession, server: Server, change: str, **extra: object) -> None:
    assert server.id is not None
    data = ServerPublic.of(server).model_dump(mode="json") | extra
    outbox.stage(
        session, make_event("server", server.id, change, version=server.version, data=data)
    )
