"""Request dependencies, as ``Annotated`` aliases routes can use directly in their signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.auth import Principal, TokenRejected
from services.api.errors import APIError, permission_denied
from services.api.state import ApiState
from shared.core.security import InvalidTokenError
from shared.messaging.publish import Publisher

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/token/.")

_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="api"'}


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.runtime.db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def get_publisher(state: StateDep) -> Publisher:
    return state.runtime.publisher


PublisherDep = Annotated[Publisher, Depends(get_publisher)]


async def get_current_user(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise APIError(401, "Authentication credentials were not provided.", headers=_AUTHENTICATE)
    try:
        claims = state.tokens.decode(credentials.credentials, "access")
    except InvalidTokenError:
        raise APIError(
            401, "Given token not valid for any token type", headers=_AUTHENTICATE
        ) from None
    # No session here: on a cache hit (services.api.auth) the request reads no user row, and
    # groups are loaded only by what needs them (the access scope, /api/users/me/).
    try:
        return await state.principals.of_claims(claims)
    except TokenRejected:
        raise APIError(401, "User not found", headers=_AUTHENTICATE) from None


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def get_superuser(user: CurrentUser) -> Principal:
    if not user.is_superuser:
        raise permission_denied()
    return user


Superuser = Annotated[Principal, Depends(get_superuser)]
