"""``/api/switch/``: network switches, organised in pools like servers (superusers manage them;
members of a pool's group see the switches in it and move them between the pools they manage)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api import membership
from services.api.access import Scope, ScopeDep
from services.api.broker import announce
from services.api.deps import SessionDep, StateDep
from services.api.errors import documented
from services.api.listing import ListQuery, ListSpec, OrderField, Page, list_params, paginate
from shared.models import Pool, Switch
from shared.models.switches import SwitchCreate, SwitchPublic, SwitchUpdate
from shared.platform.runtime import Runtime

router = APIRouter(prefix="/api/switch", tags=["switches"])

LIST_SPEC = ListSpec(
    pk=col(Switch.id),
    search=(
        col(Switch.name),
        col(Switch.model),
        col(Switch.serial_number),
        col(Switch.manufacturer),
        col(Switch.mgmt_address),
    ),
    public=SwitchPublic,
    related={"resource_pool": (col(Switch.resource_pool_id), Pool)},
    ordering={
        "id": col(Switch.id),
        "name": col(Switch.name),
        "model": col(Switch.model),
        "serial_number": col(Switch.serial_number),
        "manufacturer": col(Switch.manufacturer),
        "mgmt_address": col(Switch.mgmt_address),
        "resource_pool__name": OrderField(
            col(Pool.name), joins=((Pool, col(Pool.id) == col(Switch.resource_pool_id)),)
        ),
    },
)
SwitchListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]
MOVE_CONFLICT = documented(409, "The switch belongs to another pool (the body says which)")


@router.get("/", summary="List switches")
async def list_switches(
    session: SessionDep, scope: ScopeDep, query: SwitchListQuery
) -> Page[SwitchPublic]:
    return await paginate(session, scope.narrow(select(Switch), Switch), query, SwitchPublic.of)


async def _save(
    session: AsyncSession,
    scope: Scope,
    runtime: Runtime,
    switch: Switch,
    changes: dict[str, Any],
) -> SwitchPublic:
    pool_id = changes.pop("resource_pool", switch.resource_pool_id)
    if any(getattr(switch, name) != value for name, value in changes.items()):
        scope.require_superuser()
    target = None if pool_id is None else await scope.pool(session, pool_id, "resource_pool")
    for name, value in changes.items():
        setattr(switch, name, value)
    switch.updated_at = datetime.now(UTC)
    session.add(switch)
    await session.flush()
    if pool_id != switch.resource_pool_id:
        # The same rules (and events) as assign_switches/ — a move is an unassign plus an assign.
        if switch.resource_pool_id is not None:
            await membership.unassign(session, [switch])
            await session.flush()
        if target is not None:
            await membership.assign(session, Switch, [switch], target)
    await session.commit()
    await announce(runtime)
    return SwitchPublic.of(switch)


@router.post("/", status_code=201, summary="Create a switch")
async def create_switch(
    body: SwitchCreate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> SwitchPublic:
    scope.require_superuser()
    return await _save(session, scope, state.runtime, Switch(name=body.name), body.model_dump())


@router.get("/{switch_id}/", summary="Retrieve a switch")
async def read_switch(switch_id: int, session: SessionDep, scope: ScopeDep) -> SwitchPublic:
    return SwitchPublic.of(await scope.get(session, Switch, switch_id))


@router.put("/{switch_id}/", summary="Replace a switch", responses=MOVE_CONFLICT)
async def replace_switch(
    switch_id: int, body: SwitchCreate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> SwitchPublic:
    switch = await scope.get(session, Switch, switch_id)
    return await _save(session, scope, state.runtime, switch, body.model_dump(exclude_unset=True))


@router.patch("/{switch_id}/", summary="Update some fields of a switch", responses=MOVE_CONFLICT)
async def update_switch(
    switch_id: int, body: SwitchUpdate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> SwitchPublic:
    switch = await scope.get(session, Switch, switch_id)
    return await _save(session, scope, state.runtime, switch, body.model_dump(exclude_unset=True))


@router.delete("/{switch_id}/", status_code=204, summary="Delete a switch")
async def delete_switch(switch_id: int, session: SessionDep, scope: ScopeDep) -> Response:
    switch = await scope.get(session, Switch, switch_id)
    scope.require_superuser()
    await session.delete(switch)
    await session.commit()
    return Response(status_code=204)
