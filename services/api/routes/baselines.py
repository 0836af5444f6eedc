"""``/api/firmware_baseline/``: the firmware a set of servers should run, and compliance reports
(``/api/firmware_baseline/{id}/compliance/``, ``/api/server/{id}/firmware_compliance/``).

Access follows pools: a baseline scoped to a pool is seen and managed by the members of the
pool's group (and its parents'), like the pool; a baseline for every pool (no ``resource_pool``)
is seen by everyone and managed by superusers. A report only ever lists the servers its reader
sees.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlmodel import col, delete, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.access import Scope, ScopeDep
from services.api.broker import announce
from services.api.deps import SessionDep, StateDep
from services.api.errors import FieldErrors, not_found
from services.api.listing import ListQuery, ListSpec, Page, list_params, page_of, paginate
from services.api.lookup import get_or_404, resolve_ids
from shared.core.clock import utcnow
from shared.lifecycle import compliance
from shared.models import FirmwareBinary, Pool, Server
from shared.models.baselines import (
    BaselineCompliance,
    BaselineCreate,
    BaselinePublic,
    BaselineUpdate,
    ComplianceSummary,
    ComponentCounts,
    ComponentStatus,
    FirmwareBaseline,
    FirmwareBaselineBinary,
    FirmwareCompliance,
    ServerBaselineCompliance,
    ServerCompliance,
    ServerFirmwareCompliance,
    ServerStatus,
)

router = APIRouter(tags=["firmware baselines"])
PREFIX = "/api/firmware_baseline"

LIST_SPEC = ListSpec(
    pk=col(FirmwareBaseline.id),
    search=(col(FirmwareBaseline.name), col(FirmwareBaseline.description)),
    public=BaselinePublic,
    related={"resource_pool": (col(FirmwareBaseline.resource_pool_id), Pool)},
    ordering={
        "id": col(FirmwareBaseline.id),
        "name": col(FirmwareBaseline.name),
        "manufacturer": col(FirmwareBaseline.manufacturer),
        "created_at": col(FirmwareBaseline.created_at),
        "updated_at": col(FirmwareBaseline.updated_at),
    },
)
BaselineListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]


def _sees(scope: Scope, baseline: FirmwareBaseline) -> bool:
    return baseline.resource_pool_id is None or scope.sees_pool(baseline.resource_pool_id)


async def _get(session: AsyncSession, scope: Scope, baseline_id: int) -> FirmwareBaseline:
    baseline = await get_or_404(session, FirmwareBaseline, baseline_id)
    if not _sees(scope, baseline):
        raise not_found()
    return baseline


async def _firmware_ids(session: AsyncSession, ids: Sequence[int | None]) -> dict[int, list[int]]:
    rows = await session.exec(
        select(FirmwareBaselineBinary)
        .where(col(FirmwareBaselineBinary.baseline_id).in_(ids))
        .order_by(col(FirmwareBaselineBinary.position))
    )
    found: dict[int, list[int]] = {}
    for link in rows:
        found.setdefault(link.baseline_id, []).append(link.firmware_id)
    return found


async def _publics(
    session: AsyncSession, baselines: Sequence[FirmwareBaseline]
) -> list[BaselinePublic]:
    firmware = await _firmware_ids(session, [b.id for b in baselines])
    return [BaselinePublic.of(b, firmware.get(b.id or 0, [])) for b in baselines]


async def _check(session: AsyncSession, scope: Scope, body: BaselineCreate) -> None:
    """The binaries exist, and the pool is one the user sees; a baseline for every pool is for
    superusers (403)."""
    await resolve_ids(session, FirmwareBinary, body.firmware, "firmware")
    if body.resource_pool is None:
        scope.require_superuser()
    else:
        await scope.pool(session, body.resource_pool, "resource_pool")
    if len(set(body.firmware)) != len(body.firmware):
        raise FieldErrors.single("firmware", "A binary is named twice.")


async def _store(
    session: AsyncSession, baseline: FirmwareBaseline, body: BaselineCreate, state: StateDep
) -> BaselinePublic:
    baseline.name = body.name
    baseline.description = body.description
    baseline.manufacturer = body.manufacturer
    baseline.models = list(body.models)
    baseline.resource_pool_id = body.resource_pool
    baseline.updated_at = utcnow()
    session.add(baseline)
    await session.flush()
    assert baseline.id is not None
    await session.exec(
        delete(FirmwareBaselineBinary).where(col(FirmwareBaselineBinary.baseline_id) == baseline.id)
    )
    session.add_all(
        FirmwareBaselineBinary(baseline_id=baseline.id, firmware_id=f, position=n)
        for n, f in enumerate(body.firmware)
    )
    await compliance.recompute(session, baseline_ids=[baseline.id])
    await session.commit()
    await announce(state.runtime)
    await session.refresh(baseline)
    return (await _publics(session, [baseline]))[0]


@router.get(f"{PREFIX}/", summary="List firmware baselines")
async def list_firmware_baselines(
    session: SessionDep, scope: ScopeDep, query: BaselineListQuery
) -> Page[BaselinePublic]:
    stmt = select(FirmwareBaseline)
    if scope.pool_ids is not None:
        stmt = stmt.where(
            or_(
                col(FirmwareBaseline.resource_pool_id).is_(None),
                col(FirmwareBaseline.resource_pool_id).in_(scope.pool_ids),
            )
        )
    page = await paginate(session, stmt, query, lambda b: b)
    return Page(
        count=page.count,
        next=page.next,
        previous=page.previous,
        results=await _publics(session, page.results),
    )


@router.post(f"{PREFIX}/", status_code=201, summary="Create a firmware baseline")
async def create_firmware_baseline(
    body: BaselineCreate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> BaselinePublic:
    await _check(session, scope, body)
    return await _store(session, FirmwareBaseline(name=body.name), body, state)


@router.get(f"{PREFIX}/{{baseline_id}}/", summary="Retrieve a firmware baseline")
async def read_firmware_baseline(
    baseline_id: int, session: SessionDep, scope: ScopeDep
) -> BaselinePublic:
    return (await _publics(session, [await _get(session, scope, baseline_id)]))[0]


@router.put(f"{PREFIX}/{{baseline_id}}/", summary="Replace a firmware baseline")
async def replace_firmware_baseline(
    baseline_id: int, body: BaselineCreate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> BaselinePublic:
    baseline = await _get(session, scope, baseline_id)
    _manages(scope, baseline)
    await _check(session, scope, body)
    return await _store(session, baseline, body, state)


@router.patch(f"{PREFIX}/{{baseline_id}}/", summary="Update some fields of a firmware baseline")
async def update_firmware_baseline(
    baseline_id: int, body: BaselineUpdate, session: SessionDep, scope: ScopeDep, state: StateDep
) -> BaselinePublic:
    baseline = await _get(session, scope, baseline_id)
    _manages(scope, baseline)
    current = (await _publics(session, [baseline]))[0]
    merged = BaselineCreate.model_validate(
        current.model_dump(include=set(BaselineCreate.model_fields))
        | body.model_dump(exclude_unset=True)
    )
    await _check(session, scope, merged)
    return await _store(session, baseline, merged, state)


@router.delete(f"{PREFIX}/{{baseline_id}}/", status_code=204, summary="Delete a firmware baseline")
async def delete_firmware_baseline(
    baseline_id: int, session: SessionDep, scope: ScopeDep, state: StateDep
) -> Response:
    baseline = await _get(session, scope, baseline_id)
    _manages(scope, baseline)
    for table in (FirmwareCompliance, FirmwareBaselineBinary):
        await session.exec(delete(table).where(col(table.baseline_id) == baseline_id))
    await session.delete(baseline)
    await session.commit()
    await announce(state.runtime)
    return Response(status_code=204)


def _manages(scope: Scope, baseline: FirmwareBaseline) -> None:
    """A baseline for every pool is changed by superusers only."""
    if baseline.resource_pool_id is None:
        scope.require_superuser()


def _summary(results: Sequence[ServerCompliance]) -> ComplianceSummary:
    servers = Counter(r.status for r in results)
    components: Counter[ComponentStatus] = Counter(c.status for r in results for c in r.components)
    return ComplianceSummary(
        servers=len(results),
        compliant=servers[ServerStatus.compliant],
        non_compliant=servers[ServerStatus.non_compliant],
        unknown=servers[ServerStatus.unknown],
        components=ComponentCounts.model_validate({s: components[s] for s in ComponentStatus}),
    )


@router.get(
    f"{PREFIX}/{{baseline_id}}/compliance/",
    summary="Compliance of every server the baseline applies to, per component",
)
async def firmware_baseline_compliance(
    baseline_id: int,
    request: Request,
    session: SessionDep,
    scope: ScopeDep,
    status: Annotated[
        ServerStatus | None, Query(description="Only servers with this status.")
    ] = None,
    page: Annotated[str | None, Query(description="Page number, from 1, or `last`.")] = None,
    page_size: Annotated[
        str | None, Query(description="Results per page; without page/page_size: all.")
    ] = None,
) -> BaselineCompliance:
    await _get(session, scope, baseline_id)
    (baseline,) = await compliance.load_baselines(session, [baseline_id])
    servers = (
        await session.exec(scope.narrow(select(Server), Server).order_by(col(Server.id)))
    ).all()
    applicable = [s for s in servers if compliance.applies(baseline, s)]
    assessed = await compliance.assess_servers(session, [baseline], applicable)
    results = [
        ServerCompliance(
            server=server.id or 0,
            name=server.name,
            model=server.model,
            resource_pool=server.resource_pool_id,
            status=assessment.status,
            components=assessment.components,
        )
        for server in applicable
        for assessment in assessed[server.id or 0]
    ]
    summary = _summary(results)
    shown = [r for r in results if status is None or r.status == status]
    listed = page_of(request, shown, page, page_size)
    return BaselineCompliance(
        baseline=baseline_id,
        summary=summary,
        count=listed.count,
        next=listed.next,
        previous=listed.previous,
        results=listed.results,
    )


@router.get(
    "/api/server/{server_id}/firmware_compliance/",
    tags=["servers"],
    summary="A server's compliance with every firmware baseline that applies to it",
)
async def server_firmware_compliance(
    server_id: int, session: SessionDep, scope: ScopeDep
) -> ServerFirmwareCompliance:
    server = await scope.get(session, Server, server_id)
    baselines = [b for b in await compliance.load_baselines(session) if _sees(scope, b.row)]
    assessed = (await compliance.assess_servers(session, baselines, [server]))[server_id]
    shown: list[Any] = [
        ServerBaselineCompliance(
            baseline=a.baseline.id,
            name=a.baseline.row.name,
            status=a.status,
            components=a.components,
        )
        for a in assessed
    ]
    if server.last_inventory_at is None:
        overall = ServerStatus.unknown
    elif all(a.status == ServerStatus.compliant for a in assessed):
        overall = ServerStatus.compliant
    else:
        overall = ServerStatus.non_compliant
    return ServerFirmwareCompliance(server=server_id, status=overall, baselines=shown)
