"""``/api/pool/`` (guide: "Resource Pool Management"): pools, sub-pools, and what they hold.

Everyone sees the pools of their groups (and sub-pools) and manages them: changes them, creates
sub-pools, puts the servers and switches they see in and out (``services.api.access``); top-level
pools and deleting pools are for superusers. Deleting a pool that still holds
servers, switches or sub-pools answers 409 with what blocks it; ``?force=true`` unassigns its
servers and switches first (sub-pools must be deleted first, always).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api import membership
from services.api.access import Scope, ScopeDep
from services.api.broker import announce
from services.api.deps import SessionDep, StateDep
from services.api.errors import APIError, FieldErrors, documented
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import resolve_ids
from shared.contracts import catalog
from shared.messaging import outbox
from shared.models import Group, Pool, Server, Switch
from shared.models.pools import (
    Assignment,
    MemberSummary,
    PoolCreate,
    PoolDetail,
    PoolPublic,
    PoolUpdate,
    SubPoolCreate,
    SwitchAssignment,
)
from shared.platform.runtime import Runtime

router = APIRouter(prefix="/api/pool", tags=["pools"])

LIST_SPEC = ListSpec(
    pk=col(Pool.id),
    search=(col(Pool.name), col(Pool.description)),
    public=PoolPublic,
    related={"group": (col(Pool.group_id), Group), "parent": (col(Pool.parent_id), Pool)},
    ordering={"id": col(Pool.id), "name": col(Pool.name), "created_at": col(Pool.created_at)},
)
PoolListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]
CONFLICT = documented(409, "Blocked; the body says by what")


async def _publics(session: AsyncSession, pools: Sequence[Pool]) -> list[PoolPublic]:
    """Pools with their sub-pool ids and member counts: three queries for any number of pools."""
    ids = [p.id for p in pools]

    async def counts(model: type[Server] | type[Switch]) -> dict[int, int]:
        rows = await session.exec(
            select(model.resource_pool_id, func.count())
            .where(col(model.resource_pool_id).in_(ids))
            .group_by(col(model.resource_pool_id))
        )
        return {pool_id: n for pool_id, n in rows.all() if pool_id is not None}

    servers, switches = await counts(Server), await counts(Switch)
    children: dict[int, list[int]] = {}
    for child, parent in (
        await session.exec(
            select(Pool.id, Pool.parent_id)
            .where(col(Pool.parent_id).in_(ids))
            .order_by(col(Pool.id))
        )
    ).all():
        if parent is not None and child is not None:
            children.setdefault(parent, []).append(child)
    return [
        PoolPublic(
            id=p.id or 0,
            name=p.name,
            description=p.description,
            group=p.group_id,
            parent=p.parent_id,
            sub_pools=children.get(p.id or 0, []),
            servers_count=servers.get(p.id or 0, 0),
            switches_count=switches.get(p.id or 0, 0),
            created_at=p.created_at,
            updated_at=p.updated_at,
        )
        for p in pools
    ]


async def _detail(session: AsyncSession, pool: Pool) -> PoolDetail:
    """The pool with its sub-pools and members: three narrow reads (the counts are the members
    listed, not counted again)."""
    assert pool.id is not None

    async def members(model: type[Server] | type[Switch]) -> list[MemberSummary]:
        columns: Any = (model.id, model.name, model.model, model.manufacturer, model.serial_number)
        rows = await session.exec(
            select(*columns).where(col(model.resource_pool_id) == pool.id).order_by(col(model.id))
        )
        return [MemberSummary.model_validate(row, from_attributes=True) for row in rows.all()]

    sub_pools = await session.exec(
        select(Pool.id).where(col(Pool.parent_id) == pool.id).order_by(col(Pool.id))
    )
    children = [child for child in sub_pools.all() if child is not None]
    servers, switches = await members(Server), await members(Switch)
    return PoolDetail(
        id=pool.id,
        name=pool.name,
        description=pool.description,
        group=pool.group_id,
        parent=pool.parent_id,
        sub_pools=children,
        servers_count=len(servers),
        switches_count=len(switches),
        created_at=pool.created_at,
        updated_at=pool.updated_at,
        servers=servers,
        switches=switches,
    )


@router.get("/", summary="List pools")
async def list_pools(
    session: SessionDep, scope: ScopeDep, query: PoolListQuery
) -> Page[PoolPublic]:
    page = await paginate(session, scope.narrow(select(Pool), Pool), query, lambda p: p)
    return Page(
        count=page.count,
        next=page.next,
        previous=page.previous,
        results=await _publics(session, page.results),
    )


async def _check_relations(
    session: AsyncSession, scope: Scope, pool: Pool | None, group: int | None, parent: int | None
) -> None:
    if group is not None:
        await resolve_ids(session, Group, [group], "group")
    if parent is not None:
        await scope.pool(session, parent, "parent")
    scope.place_pool(group, parent, current_group=pool.group_id if pool else None)
    if pool is None or parent is None:
        return
    # Walk up from the new parent: reaching the pool itself would close a cycle.
    ancestor: int | None = parent
    seen: set[int] = set()
    while ancestor is not None and ancestor not in seen:  # `seen`: never loop on bad data
        if ancestor == pool.id:
            raise FieldErrors.single("parent", "A pool cannot be placed inside its own subtree.")
        seen.add(ancestor)
        ancestor = (
            await session.exec(select(Pool.parent_id).where(col(Pool.id) == ancestor))
        ).one()


async def _commit_and_announce(session: AsyncSession, runtime: Runtime) -> None:
    await session.commit()
    await announce(runtime)


@router.post("/", status_code=201, summary="Create a pool")
async def create_pool(
    body: PoolCreate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> PoolDetail:
    if body.parent is None:
        scope.require_superuser()
    await _check_relations(session, scope, None, body.group, body.parent)
    pool = Pool(
        name=body.name, description=body.description, group_id=body.group, parent_id=body.parent
    )
    session.add(pool)
    await session.flush()
    outbox.stage(session, catalog.pool_event(pool, "created"))
    await _commit_and_announce(session, state.runtime)
    return await _detail(session, pool)


@router.get("/{pool_id}/", summary="Retrieve a pool with its servers and switches")
async def read_pool(pool_id: int, session: SessionDep, scope: ScopeDep) -> PoolDetail:
    return await _detail(session, await scope.get(session, Pool, pool_id))


async def _update(
    session: AsyncSession,
    scope: ScopeDep,
    runtime: Runtime,
    pool_id: int,
    changes: dict[str, object],
) -> PoolDetail:
    pool = await scope.get(session, Pool, pool_id)
    group = changes.pop("group", pool.group_id)
    parent = changes.pop("parent", pool.parent_id)
    await _check_relations(
        session,
        scope,
        pool,
        group if isinstance(group, int) else None,
        parent if isinstance(parent, int) else None,
    )
    pool.group_id = group if isinstance(group, int) else None
    pool.parent_id = parent if isinstance(parent, int) else None
    for name, value in changes.items():
        setattr(pool, name, value)
    pool.updated_at = datetime.now(UTC)
    pool.version += 1
    session.add(pool)
    outbox.stage(session, catalog.pool_event(pool, "updated"))
    await _commit_and_announce(session, runtime)
    return await _detail(session, pool)


@router.put("/{pool_id}/", summary="Replace a pool", responses=CONFLICT)
async def replace_pool(
    pool_id: int, body: PoolCreate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> PoolDetail:
    return await _update(
        session, scope, state.runtime, pool_id, body.model_dump(exclude_unset=True)
    )


@router.patch("/{pool_id}/", summary="Update some fields of a pool")
async def update_pool(
    pool_id: int, body: PoolUpdate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> PoolDetail:
    return await _update(
        session, scope, state.runtime, pool_id, body.model_dump(exclude_unset=True)
    )


@router.delete("/{pool_id}/", status_code=204, summary="Delete a pool", responses=CONFLICT)
async def delete_pool(
    pool_id: int,
    session: SessionDep,
    scope: ScopeDep,
    state: StateDep,
    force: Annotated[bool, Query(description="Unassign its servers and switches first.")] = False,
) -> Response:
    pool = await scope.get(session, Pool, pool_id)
    scope.require_superuser()
    detail = await _detail(session, pool)
    blockers = {
        "sub_pools": detail.sub_pools,
        "servers": [] if force else [s.id for s in detail.servers],
        "switches": [] if force else [s.id for s in detail.switches],
    }
    if any(blockers.values()):
        raise BlockedDelete(blockers)
    held: list[Server | Switch] = [
        *(await session.exec(select(Server).where(col(Server.resource_pool_id) == pool.id))).all(),
        *(await session.exec(select(Switch).where(col(Switch.resource_pool_id) == pool.id))).all(),
    ]
    await membership.unassign(session, held)
    await session.flush()
    pool.version += 1
    outbox.stage(session, catalog.pool_event(pool, "deleted"))
    await session.delete(pool)
    await _commit_and_announce(session, state.runtime)
    return Response(status_code=204)


class BlockedDelete(APIError):
    def __init__(self, blockers: dict[str, list[int]]) -> None:
        what = ", ".join(f"{len(ids)} {name}" for name, ids in blockers.items() if ids)
        super().__init__(
            409,
            f"The pool still holds {what}; empty it first "
            "(or ?force=true for servers and switches).",
        )
        self.blockers = blockers

    @property
    def extra(self) -> dict[str, list[int]]:
        return {k: v for k, v in self.blockers.items() if v}


@router.post(
    "/{pool_id}/create_sub_pool/", status_code=201, summary="Create a pool inside this one"
)
async def create_sub_pool(
    pool_id: int, body: SubPoolCreate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> PoolDetail:
    parent = await scope.get(session, Pool, pool_id)
    create = PoolCreate(
        name=body.name,
        description=body.description,
        group=body.group if body.group is not None else parent.group_id,
        parent=parent.id,
    )
    return await create_pool(create, session, scope, state)


@router.post(
    "/{pool_id}/assign_servers/",
    summary="Put servers (by server or node id) into this pool",
    responses=CONFLICT,
)
async def assign_servers(
    pool_id: int, body: Assignment, session: SessionDep, scope: ScopeDep, state: StateDep
) -> PoolDetail:
    pool = await scope.get(session, Pool, pool_id)
    servers = await membership.resolve_servers(session, scope, body.servers)
    await membership.assign(session, Server, servers, pool)
    await _commit_and_announce(session, state.runtime)
    return await _detail(session, pool)


@router.post(
    "/{pool_id}/assign_switches/", summary="Put switches into this pool", responses=CONFLICT
)
async def assign_switches(
    pool_id: int, body: SwitchAssignment, session: SessionDep, scope: ScopeDep, state: StateDep
) -> PoolDetail:
    pool = await scope.get(session, Pool, pool_id)
    switches = await membership.resolve_switches(session, scope, body.switches)
    await membership.assign(session, Switch, switches, pool)
    await _commit_and_announce(session, state.runtime)
    return await _detail(session, pool)
