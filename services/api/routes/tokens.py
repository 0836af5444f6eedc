"""``/api/token/``, ``/api/token/refresh/`` and ``/api/token/revoke/``: simplejwt-compatible
bodies, claims and errors, with rotating refresh tokens (simplejwt's ``ROTATE_REFRESH_TOKENS``).
How tokens map to users and login sessions: ``services.api.auth``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import select

from services.api.auth import TokenRejected
from services.api.deps import SessionDep, StateDep
from services.api.errors import APIError, ErrorDetail
from shared.core.log import get_logger
from shared.core.security import InvalidTokenError, verify_password
from shared.models import User

log = get_logger(__name__)

router = APIRouter(prefix="/api/token", tags=["auth"])

# Generous for any passphrase, small enough that hashing it costs nothing extra.
MAX_PASSWORD_LENGTH = 4096
# Tokens are a few hundred characters; the cap only stops absurd input early.
MAX_TOKEN_LENGTH = 4096

INVALID_TOKEN = "Token is invalid or expired"  # noqa: S105 (a message, not a secret)


class TokenObtain(BaseModel):
    username: str = Field(max_length=150)
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)


class TokenPair(BaseModel):
    access: str
    refresh: str


class TokenRefresh(BaseModel):
    refresh: str = Field(max_length=MAX_TOKEN_LENGTH)


class Revoked(BaseModel):
    """Empty, as simplejwt's blacklist view answers."""


@router.post(
    "/",
    summary="Obtain an access and a refresh token",
    responses={401: {"model": ErrorDetail}, 429: {"model": ErrorDetail}},
)
async def obtain_token(
    body: TokenObtain, request: Request, state: StateDep, session: SessionDep
) -> TokenPair:
    """Throttled per client address (every attempt) and per username (failed attempts); beyond
    either limit 429 with `Retry-After`."""
    throttle = state.login_throttle
    client = throttle.client(request.client.host if request.client else None, request.headers)
    await throttle.attempt(client, body.username)
    user = (await session.exec(select(User).where(User.username == body.username))).one_or_none()
    # Argon2 takes ~0.1 s of CPU: off the event loop, so logins don't stall every other request.
    valid = await asyncio.to_thread(
        verify_password, body.password, user.password_hash if user else None
    )
    if not valid or (user is None or not user.is_active):
        await throttle.failed(body.username)
        # Never what was typed: an unknown username is often a password typed into the wrong
        # field, and a known one is named by its id. The keyed fingerprint still lets repeated
        # attempts at one name be told apart from many names.
        if user is None:
            log.info(
                "auth.login_failed",
                client=client,
                unknown_username=state.fingerprint(body.username, 16),
            )
        else:
            log.info(
                "auth.login_failed",
                client=client,
                user_id=user.id,
                reason="inactive" if valid else "wrong_password",
            )
        raise APIError(401, "No active account found with the given credentials")
    user.last_login = datetime.now(UTC)
    session.add(user)
    pair = await state.sessions.log_in(session, user)
    log.info("auth.login", user_id=user.id, client=client)
    return TokenPair(access=pair.access, refresh=pair.refresh)


@router.post(
    "/refresh/",
    summary="Exchange a refresh token for a new access and refresh token",
    responses={401: {"model": ErrorDetail}},
)
async def refresh_token(body: TokenRefresh, state: StateDep, session: SessionDep) -> TokenPair:
    """The refresh token sent is used up: keep the new one. Sending a used refresh token again
    ends its login session (every token pair it led to can no longer be refreshed)."""
    try:
        claims = state.tokens.decode(body.refresh, "refresh")
        pair = await state.sessions.refresh(session, claims)
    except (InvalidTokenError, TokenRejected):
        raise APIError(401, INVALID_TOKEN) from None
    return TokenPair(access=pair.access, refresh=pair.refresh)


@router.post(
    "/revoke/",
    summary="Log out: revoke a refresh token and its login session",
    responses={401: {"model": ErrorDetail}},
)
async def revoke_token(body: TokenRefresh, state: StateDep, session: SessionDep) -> Revoked:
    """No refresh token of this login session works afterwards. Access tokens already issued
    stay valid until they expire (as with simplejwt's blacklist); to end those too, change the
    user's password or deactivate it."""
    try:
        claims = state.tokens.decode(body.refresh, "refresh")
    except InvalidTokenError:
        raise APIError(401, INVALID_TOKEN) from None
    await state.sessions.revoke(session, claims)
    return Revoked()
