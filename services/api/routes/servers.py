"""``/api/server/``: the inventory (guide: "Server Inventory") — search, filters, ordering,
hardware sub-resources, firmware, and asking for a fresh collection."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from pydantic import Field as PField
from sqlmodel import SQLModel, col, select

from services.api.deps import SessionDep, StateDep, get_superuser
from services.api.dispatch import BROKER_UNAVAILABLE, publish
from services.api.listing import ListQuery, ListSpec, OrderField, Page, list_params, paginate
from services.api.lookup import get_or_404, resolve_ids
from shared.messaging.commands import ServerInventoryCommand
from shared.models import (
    EthernetInterface,
    FirmwareComponent,
    MemoryModule,
    Pool,
    Processor,
    Server,
    Storage,
)
from shared.models.inventory import (
    EthernetInterfacePublic,
    FirmwarePublic,
    MemoryPublic,
    ProcessorPublic,
    StoragePublic,
)
from shared.models.servers import ServerPublic, ServerReplace, ServerUpdate

router = APIRouter(prefix="/api/server", tags=["servers"], dependencies=[Depends(get_superuser)])

LIST_SPEC = ListSpec(
    pk=col(Server.id),
    search=(
        col(Server.name),
        col(Server.model),
        col(Server.serial_number),
        col(Server.manufacturer),
        col(Server.sku),
        col(Server.bmc_url),
    ),
    filters={
        "resource_pool": col(Server.resource_pool_id),
        "power_state": col(Server.power_state),
        "manufacturer": col(Server.manufacturer),
        "model": col(Server.model),
        "health": col(Server.health),
        "node": col(Server.node_id),
        "uuid": col(Server.uuid),
        "serial_number": col(Server.serial_number),
        "inventory_status": col(Server.inventory_status),
    },
    ordering={
        "id": col(Server.id),
        "name": col(Server.name),
        "model": col(Server.model),
        "serial_number": col(Server.serial_number),
        "manufacturer": col(Server.manufacturer),
        "sku": col(Server.sku),
        "bios_version": col(Server.bios_version),
        "power_state": col(Server.power_state),
        "health": col(Server.health),
        "last_inventory_at": col(Server.last_inventory_at),
        "resource_pool__name": OrderField(
            col(Pool.name), joins=((Pool, col(Pool.id) == col(Server.resource_pool_id)),)
        ),
    },
)
ServerListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]


class RefreshRequest(BaseModel):
    servers: list[int] = PField(min_length=1, max_length=100_000)


class RefreshAccepted(BaseModel):
    servers: list[ServerPublic]


@router.get("/", summary="List servers")
async def list_servers(session: SessionDep, query: ServerListQuery) -> Page[ServerPublic]:
    return await paginate(session, select(Server), query, ServerPublic.of)


@router.post(
    "/refresh/",
    status_code=202,
    summary="Collect the inventory of several servers",
    responses=BROKER_UNAVAILABLE,
)
async def refresh_servers(
    body: RefreshRequest, session: SessionDep, state: StateDep
) -> RefreshAccepted:
    servers = await resolve_ids(session, Server, body.servers, "servers")
    await _queue_inventory(state, servers)
    return RefreshAccepted(servers=[ServerPublic.of(s) for s in servers])


@router.get("/{server_id}/", summary="Retrieve a server")
async def read_server(server_id: int, session: SessionDep) -> ServerPublic:
    return ServerPublic.of(await get_or_404(session, Server, server_id))


async def _update(session: SessionDep, server_id: int, changes: dict[str, Any]) -> ServerPublic:
    server = await get_or_404(session, Server, server_id)
    if "resource_pool" in changes:
        pool_id = changes.pop("resource_pool")
        if pool_id is not None:
            await resolve_ids(session, Pool, [pool_id], "resource_pool")
        server.resource_pool_id = pool_id
    for name, value in changes.items():
        setattr(server, name, value)
    server.updated_at = datetime.now(UTC)
    session.add(server)
    await session.commit()
    return ServerPublic.of(server)


@router.put("/{server_id}/", summary="Replace a server's writable fields")
async def replace_server(server_id: int, body: ServerReplace, session: SessionDep) -> ServerPublic:
    return await _update(session, server_id, body.model_dump())


@router.patch("/{server_id}/", summary="Update some of a server's writable fields")
async def update_server(server_id: int, body: ServerUpdate, session: SessionDep) -> ServerPublic:
    return await _update(session, server_id, body.model_dump(exclude_unset=True))


@router.post(
    "/{server_id}/refresh/",
    status_code=202,
    summary="Collect this server's inventory now",
    responses=BROKER_UNAVAILABLE,
)
async def refresh_server(server_id: int, session: SessionDep, state: StateDep) -> ServerPublic:
    server = await get_or_404(session, Server, server_id)
    await _queue_inventory(state, [server])
    return ServerPublic.of(server)


async def _queue_inventory(state: StateDep, servers: list[Server]) -> None:
    request = uuid.uuid4().hex
    await publish(
        state.runtime,
        [ServerInventoryCommand(server_id=s.id, token=f"api:{request}") for s in servers if s.id],
    )


async def _parts(
    session: SessionDep, server_id: int, table: type[SQLModel], public: type[BaseModel]
) -> Page[Any]:
    await get_or_404(session, Server, server_id)
    rows = (
        await session.exec(
            select(table).where(col(table.server_id) == server_id).order_by(col(table.id))  # type: ignore[attr-defined]
        )
    ).all()
    results = [public.model_validate(row, from_attributes=True) for row in rows]
    return Page(count=len(results), next=None, previous=None, results=results)


@router.get("/{server_id}/processors/", summary="A server's processors")
async def server_processors(server_id: int, session: SessionDep) -> Page[ProcessorPublic]:
    return await _parts(session, server_id, Processor, ProcessorPublic)


@router.get("/{server_id}/memory/", summary="A server's memory modules (DIMMs)")
async def server_memory(server_id: int, session: SessionDep) -> Page[MemoryPublic]:
    return await _parts(session, server_id, MemoryModule, MemoryPublic)


@router.get("/{server_id}/ethernet_interfaces/", summary="A server's ethernet interfaces")
async def server_ethernet_interfaces(
    server_id: int, session: SessionDep
) -> Page[EthernetInterfacePublic]:
    return await _parts(session, server_id, EthernetInterface, EthernetInterfacePublic)


@router.get(
    "/{server_id}/storages/", summary="A server's storage: controllers with drives and volumes"
)
async def server_storages(server_id: int, session: SessionDep) -> Page[StoragePublic]:
    return await _parts(session, server_id, Storage, StoragePublic)


@router.get("/{server_id}/firmwares/", summary="A server's firmware inventory")
async def server_firmwares(server_id: int, session: SessionDep) -> Page[FirmwarePublic]:
    return await _parts(session, server_id, FirmwareComponent, FirmwarePublic)
