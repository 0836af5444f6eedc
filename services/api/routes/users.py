"""``/api/users/``: the caller (``me/``) and superuser-only account management."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlmodel import col, select

from services.api.deps import CurrentUser, SessionDep, get_superuser
from services.api.errors import FieldErrors
from services.api.listing import Collection, ListQuery, ListSpec, Page, list_params, list_response
from services.api.lookup import get_or_404, resolve_ids
from shared.core.security import hash_password
from shared.models import Group, GroupMembership, User
from shared.models.accounts import UserCreate, UserPublic, UserReplace, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"])

LIST_SPEC = ListSpec(
    pk=col(User.id),
    search=(col(User.username), col(User.email)),
    search_index=True,
    public=UserPublic,
    collections={"groups": Collection(col(GroupMembership.user_id), col(GroupMembership.group_id))},
    ordering={
        "id": col(User.id),
        "username": col(User.username),
        "email": col(User.email),
        "date_joined": col(User.date_joined),
        "last_login": col(User.last_login),
    },
)
_WITH_GROUPS = selectinload(User.groups)  # type: ignore[arg-type]
UserListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]


@router.get("/me/", summary="The authenticated user")
async def read_me(principal: CurrentUser, session: SessionDep) -> UserPublic:
    return UserPublic.of(await get_or_404(session, User, principal.id, _WITH_GROUPS))


admin = APIRouter(dependencies=[Depends(get_superuser)])


@admin.get("/", summary="List users", response_model=Page[UserPublic])
async def list_users(session: SessionDep, query: UserListQuery) -> Response:
    return await list_response(session, query)


async def _save(session: SessionDep, user: User) -> UserPublic:
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise FieldErrors.single("username", "A user with that username already exists.") from None
    await session.refresh(user, ["groups"])
    return UserPublic.of(user)


async def _check_username_free(session: SessionDep, username: str, user_id: int | None) -> None:
    other = (await session.exec(select(User).where(User.username == username))).one_or_none()
    if other is not None and other.id != user_id:
        raise FieldErrors.single("username", "A user with that username already exists.")


@admin.post("/", status_code=201, summary="Create a user")
async def create_user(body: UserCreate, session: SessionDep) -> UserPublic:
    await _check_username_free(session, body.username, None)
    groups = await resolve_ids(session, Group, body.groups, "groups")
    user = User(
        username=body.username,
        email=body.email,
        is_superuser=body.is_superuser,
        is_active=body.is_active,
        password_hash=await asyncio.to_thread(hash_password, body.password),
        groups=groups,
    )
    return await _save(session, user)


@admin.get("/{user_id}/", summary="Retrieve a user")
async def read_user(user_id: int, session: SessionDep) -> UserPublic:
    return UserPublic.of(await get_or_404(session, User, user_id, _WITH_GROUPS))


Access = tuple[bool, bool, set[int | None]]


def _access(user: User) -> Access:
    return user.is_active, user.is_superuser, {group.id for group in user.groups}


def _lost_access(before: Access, after: Access) -> bool:
    """Deactivated, no longer a superuser, or out of a group it was in."""
    (was_active, was_superuser, groups), (active, superuser, now_in) = before, after
    return (was_active and not active) or (was_superuser and not superuser) or bool(groups - now_in)


async def _update(session: SessionDep, user_id: int, changes: dict[str, object]) -> UserPublic:
    user = await get_or_404(session, User, user_id, _WITH_GROUPS)
    before = _access(user)
    if "username" in changes:
        await _check_username_free(session, str(changes["username"]), user.id)
    if "groups" in changes:
        group_ids = changes.pop("groups")
        assert isinstance(group_ids, list)
        user.groups = await resolve_ids(session, Group, group_ids, "groups")
    password = changes.pop("password", None)
    if password is not None:
        user.password_hash = await asyncio.to_thread(hash_password, str(password))
    for name, value in changes.items():
        setattr(user, name, value)
    # A new password or lost rights end every token issued before (the caller's own included,
    # if this is the caller: it logs in again).
    if password is not None or _lost_access(before, _access(user)):
        user.revoke_tokens()
    return await _save(session, user)


@admin.put("/{user_id}/", summary="Replace a user")
async def replace_user(user_id: int, body: UserReplace, session: SessionDep) -> UserPublic:
    return await _update(session, user_id, body.model_dump(exclude_unset=True))


@admin.patch("/{user_id}/", summary="Update some fields of a user")
async def update_user(user_id: int, body: UserUpdate, session: SessionDep) -> UserPublic:
    return await _update(session, user_id, body.model_dump(exclude_unset=True))


@admin.delete("/{user_id}/", status_code=204, summary="Delete a user")
async def delete_user(user_id: int, session: SessionDep, caller: CurrentUser) -> Response:
    user = await get_or_404(session, User, user_id)
    if user.id == caller.id:
        raise FieldErrors.single("non_field_errors", "You cannot delete your own account.")
    await session.delete(user)
    await session.commit()
    return Response(status_code=204)


router.include_router(admin)
