"""Who sees what, decided in one place (brief §5).

Superusers see and do everything. Any other user sees the pools of the groups they belong to,
those pools' sub-pools (all the way down), and the servers and switches in them — nothing else.
Routes ask the request's ``Scope`` to narrow their queries and to fetch single objects; an object
outside the scope is answered 404 (its existence is not revealed), and an action the user may see
but not do is answered 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from services.api.deps import CurrentUser, SessionDep
from services.api.errors import not_found, permission_denied
from services.api.lookup import get_or_404
from shared.contracts.events import CloudEvent
from shared.models import GroupMembership, Job, Pool, Server, Switch, User

M = TypeVar("M", bound=SQLModel)

# The entities whose events a group member may receive; every other event (nodes, scan ranges,
# …) is about something only superusers see in the REST API.
MEMBER_EVENT_ENTITIES = frozenset({"server", "switch", "pool", "job"})


@dataclass(frozen=True)
class Scope:
    user: User
    # None: no restriction (superuser).
    pool_ids: frozenset[int] | None
    # The user's groups: a deleted pool is in no one's visible pools any more, yet the members of
    # its group should still hear that it went.
    group_ids: frozenset[int] = frozenset()

    @property
    def is_superuser(self) -> bool:
        return self.pool_ids is None

    def require_superuser(self) -> None:
        if not self.is_superuser:
            raise permission_denied()

    def sees_pool(self, pool_id: int | None) -> bool:
        return self.pool_ids is None or (pool_id is not None and pool_id in self.pool_ids)

    def narrow(self, stmt: SelectOfScalar[Any], model: type[SQLModel]) -> SelectOfScalar[Any]:
        """``stmt`` restricted to the objects of ``model`` this user may see."""
        if self.pool_ids is None:
            return stmt
        column = col(model.id) if model is Pool else col(model.resource_pool_id)  # type: ignore[attr-defined]
        return stmt.where(column.in_(self.pool_ids))

    def narrow_jobs(self, stmt: SelectOfScalar[Any]) -> SelectOfScalar[Any]:
        """``stmt`` (a select of jobs) restricted to jobs of servers this user may see."""
        if self.pool_ids is None:
            return stmt
        visible = select(Server.id).where(col(Server.resource_pool_id).in_(self.pool_ids))
        return stmt.where(col(Job.server_id).in_(visible))

    async def get_job(self, session: AsyncSession, job_id: int) -> Job:
        """The job, or 404 if it does not exist or its server is outside the scope."""
        job = await get_or_404(session, Job, job_id)
        if self.pool_ids is not None:
            server = await session.get(Server, job.server_id) if job.server_id else None
            if server is None or not self.sees(server):
                raise not_found()
        return job

    def sees(self, obj: Pool | Server | Switch) -> bool:
        if isinstance(obj, Pool):
            return self.sees_pool(obj.id)
        return self.sees_pool(obj.resource_pool_id)

    @property
    def event_entities(self) -> frozenset[str] | None:
        """The entities whose events this user may receive (None: all)."""
        return None if self.pool_ids is None else MEMBER_EVENT_ENTITIES

    def sees_event(self, event: CloudEvent) -> bool:
        """Whether the user may receive ``event`` (SSE, the event list).

        The rule of the object it is about, applied to the pools the event names: a server or
        switch event names the pool it is in and, when it left one, ``previous_pool`` — so
        members of the pool it left hear that it went; a job event names its server's pool. A
        pool event names the pool, its parent and its group.
        """
        if self.pool_ids is None:
            return True
        entity = event.subject.partition("/")[0]
        data = event.data
        if entity in ("server", "switch", "job"):
            named = (data.get("resource_pool"), data.get("previous_pool"))
        elif entity == "pool":
            if data.get("group") in self.group_ids:
                return True
            named = (data.get("id"), data.get("parent"))
        else:
            return False
        return any(isinstance(pool, int) and pool in self.pool_ids for pool in named)

    async def get(self, session: AsyncSession, model: type[M], pk: int) -> M:
        """The object, or 404 if it does not exist or is outside the scope."""
        obj = await get_or_404(session, model, pk)
        if not self.sees(obj):  # type: ignore[arg-type]
            raise not_found()
        return obj


async def _group_ids(session: AsyncSession, user: User) -> frozenset[int]:
    return frozenset(
        (
            await session.exec(
                select(GroupMembership.group_id).where(col(GroupMembership.user_id) == user.id)
            )
        ).all()
    )


async def _pools_of_groups(session: AsyncSession, group_ids: frozenset[int]) -> frozenset[int]:
    """The pools of these groups and all their descendants."""
    pools = (await session.exec(select(Pool.id, Pool.parent_id, Pool.group_id))).all()
    children: dict[int, list[int]] = {}
    for pool_id, parent_id, _ in pools:
        if parent_id is not None and pool_id is not None:
            children.setdefault(parent_id, []).append(pool_id)
    seen: set[int] = set()
    stack = [p for p, _, g in pools if p is not None and g in group_ids]
    while stack:
        pool_id = stack.pop()
        if pool_id not in seen:
            seen.add(pool_id)
            stack.extend(children.get(pool_id, ()))
    return frozenset(seen)


async def scope_of(session: AsyncSession, user: User) -> Scope:
    """What ``user`` may see now (also re-read by long-lived event streams)."""
    if user.is_superuser:
        return Scope(user, None)
    group_ids = await _group_ids(session, user)
    return Scope(user, await _pools_of_groups(session, group_ids), group_ids)


async def get_scope(user: CurrentUser, session: SessionDep) -> Scope:
    return await scope_of(session, user)


ScopeDep = Annotated[Scope, Depends(get_scope)]
