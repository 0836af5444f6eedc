"""Who sees what, decided in one place (brief §5).

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

from services.api.deps import CurrentUser, SessionDep
from services.api.errors import APIError, FieldErrors, not_found, permission_denied
from services.api.event_feed import MAX_FILTER_SUBJECTS, EntityView, Visibility
from services.api.lookup import get_or_404, resolve_ids
from shared.contracts.events import CloudEvent
from shared.models import Group, GroupMembership, Node, Pool, Server, Switch, User
from shared.models.servers import InventoryErrorCode, ServerPublic

M = TypeVar("M", bound=SQLModel)

# Changes that move a server or switch into or out of a pool: a member hears them for every
# object (the event names the pools, ``sees_event`` decides), since one may bring an object into
# view; other changes only for the objects in the member's pools.
MOVES = frozenset({"assigned", "unassigned"})


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
        for this user: their pools, their groups, the nodes of the servers they see — so that a
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
        return stmt.where(false())

    def sees(self, obj: Pool | Server | Switch) -> bool:
        if isinstance(obj, Pool):
            return self.sees_pool(obj.id)
        return self.sees_pool(obj.resource_pool_id)

    def sees_event(self, event: CloudEvent) -> bool:
        """Whether the user may receive ``event`` (SSE, the event list).

        The rule of the object it is about, applied to the pools the event names: a server or
        switch event names the pool it is in and, when it left one, ``previous_pool`` — so
        members of the pool it left hear that it went. A pool event names the pool, its parent
        and its group.
        """
        if self.pool_ids is None:
            return True
        entity = event.subject.partition("/")[0]
        data = event.data
        if entity in ("server", "switch"):
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

    def event_view(self, event: CloudEvent) -> CloudEvent:
        """A visible event as this user is shown it (server events as ``server_view``)."""
        if self.is_superuser or not event.subject.startswith("server/"):
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


async def _visible_ids(
    session: AsyncSession, model: type[Server] | type[Switch], pool_ids: frozenset[int]
) -> frozenset[int] | None:
    """The ids of ``model`` in these pools; None if there are more than fit a reader's filter."""
    rows = await session.exec(
        select(model.id)
        .where(col(model.resource_pool_id).in_(pool_ids))
        .limit(MAX_FILTER_SUBJECTS + 1)
    )
    ids = frozenset(i for i in rows.all() if i is not None)
    return None if len(ids) > MAX_FILTER_SUBJECTS else ids


async def event_visibility(session: AsyncSession, scope: Scope) -> Visibility:
    """What ``scope``'s user may hear about, for the event readers' filter subjects.

    Nodes, scan ranges and webhooks are superusers' business: not in a member's view at all.
    Pools are few and any change of one may bring it into view: all their events are read and
    ``sees_event`` keeps the user's.
    """
    if scope.pool_ids is None:
        return None
    return {
        "server": EntityView(await _visible_ids(session, Server, scope.pool_ids), MOVES),
        "switch": EntityView(await _visible_ids(session, Switch, scope.pool_ids), MOVES),
        "pool": EntityView(None),
    }


async def get_scope(user: CurrentUser, session: SessionDep) -> Scope:
    return await scope_of(session, user)


ScopeDep = Annotated[Scope, Depends(get_scope)]
