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
from shared.models import GroupMembership, Pool, Server, Switch, User

M = TypeVar("M", bound=SQLModel)


@dataclass(frozen=True)
class Scope:
    user: User
    # None: no restriction (superuser).
    pool_ids: frozenset[int] | None

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

    def sees(self, obj: Pool | Server | Switch) -> bool:
        if isinstance(obj, Pool):
            return self.sees_pool(obj.id)
        return self.sees_pool(obj.resource_pool_id)

    async def get(self, session: AsyncSession, model: type[M], pk: int) -> M:
        """The object, or 404 if it does not exist or is outside the scope."""
        obj = await get_or_404(session, model, pk)
        if not self.sees(obj):  # type: ignore[arg-type]
            raise not_found()
        return obj


async def visible_pools(session: AsyncSession, user: User) -> frozenset[int]:
    """The pools of the user's groups and all their descendants."""
    group_ids = set(
        (
            await session.exec(
                select(GroupMembership.group_id).where(col(GroupMembership.user_id) == user.id)
            )
        ).all()
    )
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


async def get_scope(user: CurrentUser, session: SessionDep) -> Scope:
    if user.is_superuser:
        return Scope(user, None)
    return Scope(user, await visible_pools(session, user))


ScopeDep = Annotated[Scope, Depends(get_scope)]
