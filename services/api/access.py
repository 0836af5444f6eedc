"""Who sees what, decided in one place.

Superusers see and do everything. Any other user sees the pools of the groups they belong to,
those pools' sub-pools (all the way down), and the servers and switches in them — nothing else.
Routes ask the request's ``Scope`` to narrow their queries and to fetch single objects; an object
outside the scope is answered 404 (its existence is not revealed), and an action the user may see
but not do is answered 403.

A pool's group "controls which users can see and manage the pool" (the guide), so members manage
the pools they see: change them, create sub-pools under them, put the servers and switches they
see into them and take them out. What stays with superusers: top-level pools, deleting pools,
handing a pool to a group the user is not in, servers that are in no pool (no member sees them),
and a switch's own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from sqlalchemy import false
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from services.api.auth import Principal
from services.api.deps import CurrentUser, SessionDep
from services.api.errors import APIError, FieldErrors, not_found, permission_denied
from services.api.event_feed import MAX_FILTER_SUBJECTS, EntityView, Visibility
from services.api.lookup import get_or_404, resolve_ids
from shared.contracts.catalog import JobEventData
from shared.contracts.events import CloudEvent
from shared.models import Group, GroupMembership, Job, Node, Pool, Server, Switch, User
from shared.models.jobs import JobPublic
from shared.models.servers import InventoryErrorCode, ServerPublic

M = TypeVar("M", bound=SQLModel)

# Changes that move a server or switch into or out of a pool: a member hears them for every
# object (the event names the pools, ``sees_event`` decides), since one may bring an object into
# view; other changes only for the objects in the member's pools.
MOVES = frozenset({"assigned", "unassigned"})
# A new job of a server in the member's pools comes into view with its first event.
NEW_JOBS = frozenset({"created"})


@dataclass(frozen=True)
class Scope:
    user: Principal
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

    def place_pool(
        self, group: int | None, parent: int | None, *, current_group: int | None = None
    ) -> None:
        """403 unless the user may put a pool in ``group`` under ``parent`` (a parent they see,
        checked by the caller): members give pools only to their own groups, and never place
        one where they would no longer see it."""
        if self.pool_ids is None:
            return
        if group != current_group and group is not None and group not in self.group_ids:
            raise APIError(403, "You can only give a pool to a group you belong to.")
        if group not in self.group_ids and not (parent is not None and self.sees_pool(parent)):
            raise APIError(
                403, "The pool would be out of your reach: keep it in your groups' pools."
            )

    async def pool(self, session: AsyncSession, pool_id: int, field: str) -> Pool:
        """The pool a body field names, or 400 naming the field if it is missing or hidden."""
        pool = (await resolve_ids(session, Pool, [pool_id], field))[0]
        if not self.sees(pool):
            raise FieldErrors.single(field, f'Invalid pk "{pool_id}" - object does not exist.')
        return pool

    def sees_pool(self, pool_id: int | None) -> bool:
        return self.pool_ids is None or (pool_id is not None and pool_id in self.pool_ids)

    def narrow(self, stmt: SelectOfScalar[Any], model: type[SQLModel]) -> SelectOfScalar[Any]:
        """``stmt`` restricted to the objects of ``model`` this user may see."""
        if self.pool_ids is None:
            return stmt
        column = col(model.id) if model is Pool else col(model.resource_pool_id)  # type: ignore[attr-defined]
        return stmt.where(column.in_(self.pool_ids))

    def narrow_ids(self, stmt: SelectOfScalar[Any], model: type[SQLModel]) -> SelectOfScalar[Any]:
        """``stmt`` (a select of ``model``'s ids) restricted to the rows a list filter may name
        for this user: their pools, their groups, the servers they see and their nodes and jobs,
        themselves — so that a
        filter naming a row they may not see answers as if it did not exist."""
        if self.pool_ids is None:
            return stmt
        pk: Any = col(model.id)  # type: ignore[attr-defined]
        if model is Pool:
            return stmt.where(pk.in_(self.pool_ids))
        if model is Group:
            return stmt.where(pk.in_(self.group_ids))
        if model is Node:
            servers = select(Server.node_id).where(col(Server.resource_pool_id).in_(self.pool_ids))
            return stmt.where(pk.in_(servers))
        if model is Server:
            visible = select(Server.id).where(col(Server.resource_pool_id).in_(self.pool_ids))
            return stmt.where(pk.in_(visible))
        if model is Job:
            return self.narrow_jobs(stmt)
        if model is User:  # a member knows no other user
            return stmt.where(pk == self.user.id)
        return stmt.where(false())

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

    def server_view(self, server: Server) -> ServerPublic:
        """A server as this user is shown it: BMC failure details (the BMC's address, often
        the account used) are for superusers; others get the failure's code and generic text."""
        public = ServerPublic.of(server)
        return public if self.is_superuser else public.without_bmc_details()

    def job_view(self, job: Job) -> JobPublic:
        """A job as this user is shown it: the reasons of BMC failures (they name the BMC's
        address, often the account) are for superusers; others get the code's generic text."""
        public = JobPublic.of(job)
        return public if self.is_superuser else public.without_bmc_details()

    def event_view(self, event: CloudEvent) -> CloudEvent:
        """A visible event as this user is shown it (server events as ``server_view``, job
        events as ``job_view``)."""
        if self.is_superuser:
            return event
        if event.subject.startswith("job/"):
            shown = JobEventData.model_validate(event.data).without_bmc_details()
            return event.model_copy(update={"data": shown.model_dump(mode="json")})
        if not event.subject.startswith("server/"):
            return event
        if event.data.get("inventory_error") is None:
            return event
        generic = InventoryErrorCode.generic_text(event.data.get("inventory_error_code"))
        return event.model_copy(update={"data": event.data | {"inventory_error": generic}})

    def changes_view(self, event: CloudEvent, visible: Visibility) -> bool:
        """Whether a visible ``event`` may change what this user sees (the view must be read
        again): a pool event, or a server or switch now in or out of the user's pools while
        ``visible`` says otherwise."""
        if self.pool_ids is None or visible is None:
            return False
        entity, _, entity_id = event.subject.partition("/")
        if entity == "pool":
            return True
        view = visible.get(entity)
        if view is None or view.ids is None or not entity_id.isdigit():
            return False
        in_pool = event.data.get("resource_pool") in self.pool_ids
        return in_pool != (int(entity_id) in view.ids)

    async def get(self, session: AsyncSession, model: type[M], pk: int) -> M:
        """The object, or 404 if it does not exist or is outside the scope."""
        obj = await get_or_404(session, model, pk)
        if not self.sees(obj):  # type: ignore[arg-type]
            raise not_found()
        return obj


async def _group_ids(session: AsyncSession, user: Principal) -> frozenset[int]:
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


async def scope_of(session: AsyncSession, user: Principal) -> Scope:
    """What ``user`` may see now (also re-read by long-lived event streams)."""
    if user.is_superuser:
        return Scope(user, None)
    group_ids = await _group_ids(session, user)
    return Scope(user, await _pools_of_groups(session, group_ids), group_ids)


async def _visible_ids(
    session: AsyncSession, visible: SelectOfScalar[Any]
) -> frozenset[int] | None:
    """The ids ``visible`` selects; None if there are more than fit a reader's filter."""
    rows = await session.exec(visible.limit(MAX_FILTER_SUBJECTS + 1))
    ids = frozenset(i for i in rows.all() if i is not None)
    return None if len(ids) > MAX_FILTER_SUBJECTS else ids


def _in_pools(model: type[Server] | type[Switch], pool_ids: frozenset[int]) -> SelectOfScalar[Any]:
    return select(model.id).where(col(model.resource_pool_id).in_(pool_ids))


async def event_visibility(session: AsyncSession, scope: Scope) -> Visibility:
    """What ``scope``'s user may hear about, for the event readers' filter subjects.

    Nodes, scan ranges and webhooks are superusers' business: not in a member's view at all.
    Jobs are heard by id, like servers: those of the servers in the user's pools, and any new
    one (``sees_event`` keeps those of the user's servers, and the view is read again). Pools
    are few and any change of one may bring it into view: all their events are read and
    ``sees_event`` keeps the user's.
    """
    if scope.pool_ids is None:
        return None
    jobs = scope.narrow_jobs(select(Job.id))
    return {
        "server": EntityView(await _visible_ids(session, _in_pools(Server, scope.pool_ids)), MOVES),
        "switch": EntityView(await _visible_ids(session, _in_pools(Switch, scope.pool_ids)), MOVES),
        "pool": EntityView(None),
        "job": EntityView(await _visible_ids(session, jobs), NEW_JOBS),
    }


async def get_scope(user: CurrentUser, session: SessionDep) -> Scope:
    return await scope_of(session, user)


ScopeDep = Annotated[Scope, Depends(get_scope)]
