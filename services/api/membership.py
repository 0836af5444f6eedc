"""Putting servers and switches into pools and taking them out, for the pool and server routes.

Assignment is all-or-nothing and race-free: one conditional UPDATE moves only members that are
unassigned (or already in the target pool), so of two concurrent requests for the same server
exactly one wins; if any requested member could not be moved, the transaction is rolled back and
the answer names, per member, the pool that holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.access import Scope
from services.api.errors import APIError, FieldErrors
from services.api.lookup import is_id, resolve_ids
from shared.contracts import catalog
from shared.contracts.events import CloudEvent
from shared.lifecycle import compliance
from shared.lifecycle import job as job_lifecycle
from shared.messaging import outbox
from shared.models import Pool, Server, Switch


class MembershipConflict(APIError):
    def __init__(self, detail: str, conflicts: list[dict[str, Any]]) -> None:
        super().__init__(409, detail)
        self.conflicts = conflicts

    @property
    def extra(self) -> dict[str, Any]:
        jobs = {c["job"] for c in self.conflicts if c.get("job") is not None}
        # One job in the way is named at the top too, as every job conflict does.
        return {"conflicts": self.conflicts} | ({"job": jobs.pop()} if len(jobs) == 1 else {})


def refuse_locked(members: list[Any]) -> None:
    """409 naming, per locked server, what holds it (and the job, when a job does)."""
    _refuse({m.id: m.locked_by for m in members if isinstance(m, Server) and m.id and m.locked_by})


def _refuse(locks: dict[int, str]) -> None:
    if not locks:
        return
    conflicts: list[dict[str, Any]] = []
    for server, by in locks.items():
        job = job_lifecycle.locking_job(by)
        conflicts.append({"server": server, "locked_by": by} | ({"job": job} if job else {}))
    held = ", ".join(f"{server} by {by}" for server, by in locks.items())
    raise MembershipConflict(
        f"Servers locked by a running operation cannot leave their pool ({held}); nothing "
        "was changed.",
        conflicts,
    )


async def resolve_servers(session: AsyncSession, scope: Scope, ids: list[int]) -> list[Server]:
    """Servers by server id or, failing that, by node (BMC) id, as the guide allows.

    A server id wins over a node id with the same number. Unknown or invisible ids → 400.
    """
    wanted = list(dict.fromkeys(ids))
    possible = [i for i in wanted if is_id(i)]
    by_id = {
        s.id: s
        for s in (
            await session.exec(
                scope.narrow(select(Server), Server).where(col(Server.id).in_(possible))
            )
        ).all()
    }
    rest = [i for i in wanted if i not in by_id]
    by_node: dict[int, list[Server]] = {}
    if any(is_id(i) for i in rest):
        for server in (
            await session.exec(
                scope.narrow(select(Server), Server).where(
                    col(Server.node_id).in_([i for i in rest if is_id(i)])
                )
            )
        ).all():
            assert server.node_id is not None
            by_node.setdefault(server.node_id, []).append(server)
    missing = [i for i in rest if i not in by_node]
    if missing:
        raise FieldErrors(
            {"servers": [f'Invalid pk "{i}" - no such server or node.' for i in missing]}
        )
    servers: dict[int, Server] = {}
    for i in wanted:
        for server in [by_id[i]] if i in by_id else by_node[i]:
            assert server.id is not None
            servers[server.id] = server
    return list(servers.values())


async def resolve_switches(session: AsyncSession, scope: Scope, ids: list[int]) -> list[Switch]:
    """Switches by id; unknown or invisible ids → 400 naming ``switches``."""
    switches = await resolve_ids(session, Switch, ids, "switches")
    hidden = [s.id for s in switches if not scope.sees(s)]
    if hidden:
        raise FieldErrors(
            {"switches": [f'Invalid pk "{i}" - object does not exist.' for i in hidden]}
        )
    return switches


async def _conflicts(
    session: AsyncSession, model: type[Server] | type[Switch], ids: list[int], pool_id: int
) -> list[dict[str, Any]]:
    rows = (
        await session.exec(
            select(model.id, Pool.id, Pool.name)
            .join(Pool, col(Pool.id) == col(model.resource_pool_id))
            .where(col(model.id).in_(ids), col(model.resource_pool_id) != pool_id)
        )
    ).all()
    key = "server" if model is Server else "switch"
    return [
        {key: member, "resource_pool": pid, "resource_pool_name": name}
        for member, pid, name in rows
    ]


async def assign(
    session: AsyncSession, model: type[Server] | type[Switch], members: list[Any], pool: Pool
) -> None:
    """Put ``members`` into ``pool``; 409 naming the holders if any is in another pool."""
    assert pool.id is not None
    ids = [m.id for m in members]
    moved = await session.exec(
        update(model)
        .where(
            col(model.id).in_(ids),
            or_(col(model.resource_pool_id).is_(None), col(model.resource_pool_id) == pool.id),
        )
        .values(resource_pool_id=pool.id, updated_at=datetime.now(UTC), version=model.version + 1)
    )
    if moved.rowcount != len(ids):
        conflicts = await _conflicts(session, model, ids, pool.id)
        await session.rollback()
        kind = "servers" if model is Server else "switches"
        raise MembershipConflict(
            f"Some {kind} already belong to another pool; nothing was assigned.", conflicts
        )
    for member in members:
        await session.refresh(member)
        outbox.stage(session, _member_event(member, "assigned"))
    if model is Server:
        # Pool-scoped baselines now apply to the servers, or no longer do.
        await compliance.recompute(session, server_ids=ids)


async def unassign(session: AsyncSession, members: list[Any]) -> None:
    """Take ``members`` out of their pools; 409 if a server is locked (a job holds it)."""
    refuse_locked(members)
    await _lock_and_reread(session, members)
    # Read again under the row locks: a job may have locked a server since it was read (it
    # stays where it is), and a job or an inventory may have moved its version on.
    locks = {m.id: m.locked_by for m in members if isinstance(m, Server) and m.id and m.locked_by}
    if locks:
        await session.rollback()
        _refuse(locks)
    servers = [m.id for m in members if isinstance(m, Server) and m.resource_pool_id is not None]
    for member in members:
        if member.resource_pool_id is None:
            continue
        previous = member.resource_pool_id
        member.resource_pool_id = None
        member.version += 1  # safe: the row is locked until this transaction ends
        member.updated_at = datetime.now(UTC)
        session.add(member)
        outbox.stage(session, _member_event(member, "unassigned", previous_pool=previous))
    if servers:
        await compliance.recompute(session, server_ids=[i for i in servers if i is not None])


async def _lock_and_reread(session: AsyncSession, members: list[Any]) -> None:
    """Write the members' rows first (row lock on PostgreSQL, the write lock on SQLite), then
    load them again, so what this transaction changes starts from what others committed."""
    for model in (Server, Switch):
        ids = [m.id for m in members if isinstance(m, model)]
        if not ids:
            continue
        await session.exec(
            update(model).where(col(model.id).in_(ids)).values(version=model.version)
        )
        await session.exec(
            select(model).where(col(model.id).in_(ids)).execution_options(populate_existing=True)
        )


def _member_event(member: Server | Switch, change: str, **extra: int | None) -> CloudEvent:
    if isinstance(member, Server):
        return catalog.server_event(member, change, **extra)
    return catalog.switch_event(member, change, **extra)
