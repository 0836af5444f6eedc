"""``/api/groups/``: superuser-only; a group's members are user ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlmodel import col, select

from services.api.deps import SessionDep, get_superuser
from services.api.errors import FieldErrors
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404, resolve_ids
from shared.models import Group, User
from shared.models.accounts import GroupCreate, GroupPublic, GroupUpdate

router = APIRouter(prefix="/api/groups", tags=["groups"], dependencies=[Depends(get_superuser)])

LIST_SPEC = ListSpec(
    pk=col(Group.id),
    search=(col(Group.name),),
    filters={"name": col(Group.name)},
    ordering={"id": col(Group.id), "name": col(Group.name)},
)
_WITH_USERS = selectinload(Group.users)  # type: ignore[arg-type]
GroupListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]


@router.get("/", summary="List groups")
async def list_groups(session: SessionDep, query: GroupListQuery) -> Page[GroupPublic]:
    return await paginate(session, select(Group).options(_WITH_USERS), query, GroupPublic.of)


async def _save(session: SessionDep, group: Group) -> GroupPublic:
    session.add(group)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise FieldErrors.single("name", "group with this name already exists.") from None
    await session.refresh(group, ["users"])
    return GroupPublic.of(group)


@router.post("/", status_code=201, summary="Create a group")
async def create_group(body: GroupCreate, session: SessionDep) -> GroupPublic:
    members = await resolve_ids(session, User, body.members, "members")
    return await _save(session, Group(name=body.name, users=members))


@router.get("/{group_id}/", summary="Retrieve a group")
async def read_group(group_id: int, session: SessionDep) -> GroupPublic:
    return GroupPublic.of(await get_or_404(session, Group, group_id, _WITH_USERS))


async def _update(session: SessionDep, group_id: int, changes: GroupUpdate) -> GroupPublic:
    group = await get_or_404(session, Group, group_id, _WITH_USERS)
    if changes.name is not None:
        group.name = changes.name
    if changes.members is not None:
        members = await resolve_ids(session, User, changes.members, "members")
        # Whoever leaves the group loses its pools: their tokens end (see services.api.auth).
        staying = {user.id for user in members}
        for user in group.users:
            if user.id not in staying:
                user.revoke_tokens()
        group.users = members
    return await _save(session, group)


@router.put("/{group_id}/", summary="Replace a group")
async def replace_group(group_id: int, body: GroupCreate, session: SessionDep) -> GroupPublic:
    return await _update(session, group_id, GroupUpdate(name=body.name, members=body.members))


@router.patch("/{group_id}/", summary="Update some fields of a group")
async def update_group(group_id: int, body: GroupUpdate, session: SessionDep) -> GroupPublic:
    return await _update(session, group_id, body)


@router.delete("/{group_id}/", status_code=204, summary="Delete a group")
async def delete_group(group_id: int, session: SessionDep) -> Response:
    group = await get_or_404(session, Group, group_id, _WITH_USERS)
    for user in group.users:
        user.revoke_tokens()
    await session.delete(group)
    await session.commit()
    return Response(status_code=204)
