"""``/api/token/`` and ``/api/token/refresh/``: simplejwt-compatible bodies, claims and errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlmodel import select

from services.api.deps import SessionDep, StateDep
from services.api.errors import APIError, ErrorDetail
from shared.core.log import get_logger
from shared.core.security import InvalidTokenError, verify_password
from shared.models import User

log = get_logger(__name__)

router = APIRouter(prefix="/api/token", tags=["auth"])


class TokenObtain(BaseModel):
    username: str
    password: str


class TokenPair(BaseModel):
    access: str
    refresh: str


class TokenRefresh(BaseModel):
    refresh: str


class AccessToken(BaseModel):
    access: str


async def _throttle(state: StateDep, request: Request) -> None:
    throttle = state.token_throttle
    client = request.client.host if request.client else "unknown"
    if await throttle.limiter.hit(throttle.rate, "token", client):
        return
    reset_at, _ = await throttle.limiter.get_window_stats(throttle.rate, "token", client)
    wait = max(1, int(reset_at - datetime.now(UTC).timestamp()) + 1)
    raise APIError(
        429,
        f"Request was throttled. Expected available in {wait} seconds.",
        headers={"Retry-After": str(wait)},
    )


@router.post(
    "/",
    summary="Obtain an access and a refresh token",
    responses={401: {"model": ErrorDetail}, 429: {"model": ErrorDetail}},
)
async def obtain_token(
    body: TokenObtain, request: Request, state: StateDep, session: SessionDep
) -> TokenPair:
    await _throttle(state, request)
    user = (await session.exec(select(User).where(User.username == body.username))).one_or_none()
    # Argon2 takes ~0.1 s of CPU: off the event loop, so logins don't stall every other request.
    valid = await asyncio.to_thread(
        verify_password, body.password, user.password_hash if user else None
    )
    if not valid or (user is None or not user.is_active):
        log.info("auth.login_failed", username=body.username)
        raise APIError(401, "No active account found with the given credentials")
    assert user.id is not None
    user.last_login = datetime.now(UTC)
    session.add(user)
    await session.commit()
    log.info("auth.login", user_id=user.id)
    return TokenPair(
        access=state.tokens.issue(user.id, "access"),
        refresh=state.tokens.issue(user.id, "refresh"),
    )


@router.post(
    "/refresh/",
    summary="Exchange a refresh token for a new access token",
    responses={401: {"model": ErrorDetail}},
)
async def refresh_token(body: TokenRefresh, state: StateDep, session: SessionDep) -> AccessToken:
    try:
        claims = state.tokens.decode(body.refresh, "refresh")
    except InvalidTokenError:
        raise APIError(401, "Token is invalid or expired") from None
    user = await session.get(User, claims["user_id"])
    if user is None or not user.is_active or user.id is None:
        raise APIError(401, "Token is invalid or expired")
    return AccessToken(access=state.tokens.issue(user.id, "access"))
