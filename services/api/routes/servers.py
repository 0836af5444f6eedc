"""``/api/server/``: the inventory (guide: "Server Inventory") — search, filters, ordering,
hardware sub-resources, firmware, and asking for a fresh collection."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel
from pydantic import Field as PField
from sqlmodel import SQLModel, col, select

from services.api import jobs, membership
from services.api.access import ScopeDep
from services.api.broker import BROKER_UNAVAILABLE, announce, publish
from services.api.deps import SessionDep, StateDep
from services.api.errors import documented
from services.api.listing import (
    ListQuery,
    ListSpec,
    OrderField,
    Page,
    list_params,
    list_response,
)
from shared.contracts.commands import ServerInventoryCommand
from shared.models import (
    EthernetInterface,
    FirmwareComponent,
    MemoryModule,
    Node,
    OSImage,
    Pool,
    Processor,
    Server,
    Storage,
)
from shared.models.inventory import (
    EthernetInterfacePublic,
    FirmwareComponentPublic,
    MemoryPublic,
    ProcessorPublic,
    StoragePublic,
)
from shared.models.jobs import BootRequest, BulkJobs, BulkPowerRequest, JobPublic, PowerRequest
from shared.models.pools import Assignment
from shared.models.servers import ServerPublic, ServerReplace, ServerUpdate

router = APIRouter(prefix="/api/server", tags=["servers"])

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
    search_index=True,
    public=ServerPublic,
    related={
        "node": (col(Server.node_id), Node),
        "resource_pool": (col(Server.resource_pool_id), Pool),
        "os": (col(Server.os_image_id), OSImage),
    },
    # Members are shown a generic text in its place (``Scope.server_view``): an exact filter on
    # it would let them test guesses of the real one. ``inventory_error_code`` is the filter.
    unfiltered=frozenset({"inventory_error"}),
    ordering={
        "id": col(Server.id),
        "name": col(Server.name),
        "model": col(Server.model),
        "serial_number": col(Server.serial_number),
        "manufacturer": col(Server.manufacturer),
        "sku": col(Server.sku),
        "bios_version": col(Server.bios_version),
        "bmc_version": col(Server.bmc_version),
        "power_state": col(Server.power_state),
        "health": col(Server.health),
        "last_inventory_at": col(Server.last_inventory_at),
        "resource_pool__name": OrderField(
            col(Pool.name), joins=((Pool, col(Pool.id) == col(Server.resource_pool_id)),)
        ),
    },
)
ServerListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]
MOVE_CONFLICT = documented(409, "The server is locked, or another pool holds it")


class RefreshRequest(BaseModel):
    servers: list[int] = PField(min_length=1, max_length=100_000)


class RefreshAccepted(BaseModel):
    servers: list[ServerPublic]


@router.get("/", summary="List servers", response_model=Page[ServerPublic])
async def list_servers(session: SessionDep, scope: ScopeDep, query: ServerListQuery) -> Response:
    return await list_response(
        session,
        query,
        narrow=lambda stmt: scope.narrow(stmt, Server),  # type: ignore[arg-type]
        adjust=None if scope.is_superuser else ServerPublic.without_bmc_details,
    )


@router.post(
    "/refresh/",
    status_code=202,
    summary="Collect the inventory of several servers",
    responses=BROKER_UNAVAILABLE,
)
async def refresh_servers(
    body: RefreshRequest, session: SessionDep, scope: ScopeDep, state: StateDep
) -> RefreshAccepted:
    servers = await membership.resolve_servers(session, scope, body.servers)
    await _queue_inventory(state, servers)
    return RefreshAccepted(servers=[scope.server_view(s) for s in servers])


@router.post(
    "/power/",
    status_code=202,
    summary="Power action on several servers: one job each, all or none",
    responses=jobs.JOB_RESPONSES,
)
async def power_servers(body: BulkPowerRequest, request: jobs.JobRequestDep) -> BulkJobs:
    servers = await membership.resolve_servers(request.session, request.scope, body.servers)
    params = body.model_dump(mode="json", exclude_none=True, exclude={"servers"})
    return BulkJobs(
        jobs=request.shown(await request.start(request.new_jobs(servers, "power", params)))
    )


@router.get("/{server_id}/", summary="Retrieve a server")
async def read_server(server_id: int, session: SessionDep, scope: ScopeDep) -> ServerPublic:
    return scope.server_view(await scope.get(session, Server, server_id))


@router.post(
    "/remove_from_pool/",
    summary="Take servers out of their pools",
    responses=documented(409, "A server is locked by a running operation"),
)
async def remove_from_pool(
    body: Assignment, session: SessionDep, scope: ScopeDep, state: StateDep
) -> RefreshAccepted:
    servers = await membership.resolve_servers(session, scope, body.servers)
    await membership.unassign(session, list(servers))
    await session.commit()
    await announce(state.runtime)
    return RefreshAccepted(servers=[scope.server_view(s) for s in servers])


async def _move(session: SessionDep, scope: ScopeDep, server: Server, pool_id: int | None) -> None:
    """Moving a server between pools is pool management: between pools the user sees (a member
    sees no unassigned server, so putting those in pools stays a superuser's act); a server
    locked by a job stays where it is (409 naming the job)."""
    target = None if pool_id is None else await scope.pool(session, pool_id, "resource_pool")
    membership.refuse_locked([server])
    if server.resource_pool_id is not None:
        await membership.unassign(session, [server])
        await session.flush()
    if target is not None:
        await membership.assign(session, Server, [server], target)


async def _update(
    session: SessionDep, scope: ScopeDep, state: StateDep, server_id: int, changes: dict[str, Any]
) -> ServerPublic:
    server = await scope.get(session, Server, server_id)
    if "resource_pool" in changes:
        pool_id = changes.pop("resource_pool")
        if pool_id != server.resource_pool_id:
            await _move(session, scope, server, pool_id)
    for name, value in changes.items():
        setattr(server, name, value)
    server.updated_at = datetime.now(UTC)
    session.add(server)
    await session.commit()
    await announce(state.runtime)
    return scope.server_view(server)


@router.put("/{server_id}/", summary="Replace a server's writable fields", responses=MOVE_CONFLICT)
async def replace_server(
    server_id: int, body: ServerReplace, session: SessionDep, scope: ScopeDep, state: StateDep
) -> ServerPublic:
    return await _update(session, scope, state, server_id, body.model_dump(exclude_unset=True))


@router.patch(
    "/{server_id}/", summary="Update some of a server's writable fields", responses=MOVE_CONFLICT
)
async def update_server(
    server_id: int, body: ServerUpdate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> ServerPublic:
    return await _update(session, scope, state, server_id, body.model_dump(exclude_unset=True))


@router.post(
    "/{server_id}/refresh/",
    status_code=202,
    summary="Collect this server's inventory now",
    responses=BROKER_UNAVAILABLE,
)
async def refresh_server(
    server_id: int, session: SessionDep, scope: ScopeDep, state: StateDep
) -> ServerPublic:
    server = await scope.get(session, Server, server_id)
    await _queue_inventory(state, [server])
    return scope.server_view(server)


async def _start_one(
    request: jobs.JobRequest, server_id: int, kind: str, body: BaseModel
) -> JobPublic:
    server = await request.scope.get(request.session, Server, server_id)
    params = body.model_dump(mode="json", exclude_none=True)
    return request.shown(await request.start(request.new_jobs([server], kind, params)))[0]


@router.post(
    "/{server_id}/power/",
    status_code=202,
    summary="Power action: on, off, graceful_shutdown, restart, graceful_restart, power_cycle, nmi",
    responses=jobs.JOB_RESPONSES,
)
async def power_server(
    server_id: int, body: PowerRequest, request: jobs.JobRequestDep
) -> JobPublic:
    return await _start_one(request, server_id, "power", body)


@router.post(
    "/{server_id}/boot/",
    status_code=202,
    summary="Set the boot override (target, once or continuous, mode)",
    responses=jobs.JOB_RESPONSES,
)
async def set_boot_override(
    server_id: int, body: BootRequest, request: jobs.JobRequestDep
) -> JobPublic:
    return await _start_one(request, server_id, "boot", body)


async def _queue_inventory(state: StateDep, servers: list[Server]) -> None:
    request = uuid.uuid4().hex
    await publish(
        state.runtime,
        [ServerInventoryCommand(server_id=s.id, token=f"api:{request}") for s in servers if s.id],
    )


async def _parts(
    session: SessionDep,
    scope: ScopeDep,
    server_id: int,
    table: type[SQLModel],
    public: type[BaseModel],
) -> Page[Any]:
    await scope.get(session, Server, server_id)
    rows = (
        await session.exec(
            select(table).where(col(table.server_id) == server_id).order_by(col(table.id))  # type: ignore[attr-defined]
        )
    ).all()
    results = [public.model_validate(row, from_attributes=True) for row in rows]
    return Page(count=len(results), next=None, previous=None, results=results)


@router.get("/{server_id}/processors/", summary="A server's processors")
async def server_processors(
    server_id: int, session: SessionDep, scope: ScopeDep
) -> Page[ProcessorPublic]:
    return await _parts(session, scope, server_id, Processor, ProcessorPublic)


@router.get("/{server_id}/memory/", summary="A server's memory modules (DIMMs)")
async def server_memory(server_id: int, session: SessionDep, scope: ScopeDep) -> Page[MemoryPublic]:
    return await _parts(session, scope, server_id, MemoryModule, MemoryPublic)


@router.get("/{server_id}/ethernet_interfaces/", summary="A server's ethernet interfaces")
async def server_ethernet_interfaces(
    server_id: int, session: SessionDep, scope: ScopeDep
) -> Page[EthernetInterfacePublic]:
    return await _parts(session, scope, server_id, EthernetInterface, EthernetInterfacePublic)


@router.get(
    "/{server_id}/storages/", summary="A server's storage: controllers with drives and volumes"
)
async def server_storages(
    server_id: int, session: SessionDep, scope: ScopeDep
) -> Page[StoragePublic]:
    return await _parts(session, scope, server_id, Storage, StoragePublic)


@router.get("/{server_id}/firmwares/", summary="A server's firmware inventory")
async def server_firmwares(
    server_id: int, session: SessionDep, scope: ScopeDep
) -> Page[FirmwareComponentPublic]:
    return await _parts(session, scope, server_id, FirmwareComponent, FirmwareComponentPublic)
