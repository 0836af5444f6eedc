"""Which user a token stands for, and the login sessions refresh tokens belong to.

Every token carries the user's id, the user's token version (``ver``) and its login session
(``sid``). A token is good only while the user exists, is active and still has that version:
deleting a user (ids are never reused), deactivating it, changing its password, taking a
superuser's rights or a group away raise the version and end every token issued before.

The check on each request is ``current_user_from_claims``: one primary-key read of the user
compared with the claims, nothing else — the one place to put a short-lived cache of
``(id, version, active)`` when authentication must skip the database on the hot path.

Refresh tokens are single use. ``POST /api/token/`` opens a login session whose row holds the
id (``jti``) of the only refresh token of that session still usable; a refresh swaps it for the
new token's in one conditional update, so of two concurrent refreshes with one token exactly one
wins. A refresh token that is no longer the session's current one was used before — a copy in
someone else's hands, or a client replaying it — and ends the whole session (the stolen copy
and the legitimate one alike: the user logs in again). Sessions are pruned once expired.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, delete, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.core.log import get_logger
from shared.core.security import TokenCodec
from shared.models import LoginSession, User

log = get_logger(__name__)

# Expired sessions are deleted at most this often per process (on a login).
PRUNE_EVERY_S = 600.0


class TokenRejected(Exception):
    """The token is well-formed and signed, but no longer stands for anyone."""


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


async def current_user_from_claims(session: AsyncSession, claims: dict[str, Any]) -> User:
    """The user a verified token stands for; ``TokenRejected`` if it no longer does."""
    user = await session.get(User, claims["user_id"])
    if user is None or not user.is_active or user.token_version != claims["ver"]:
        raise TokenRejected
    return user


class Sessions:
    """Issues token pairs and keeps the login sessions behind them."""

    def __init__(self, codec: TokenCodec) -> None:
        self.codec = codec
        self._pruned_at = 0.0

    def _pair(self, user: User, session_id: str) -> tuple[TokenPair, str, datetime]:
        assert user.id is not None
        access = self.codec.issue(user.id, "access", version=user.token_version, session=session_id)
        refresh = self.codec.issue(
            user.id, "refresh", version=user.token_version, session=session_id
        )
        return TokenPair(access.token, refresh.token), refresh.jti, refresh.expires_at

    async def log_in(self, session: AsyncSession, user: User) -> TokenPair:
        """A new login session for ``user`` (committed with whatever ``session`` holds)."""
        assert user.id is not None
        session_id = uuid.uuid4().hex
        pair, jti, expires_at = self._pair(user, session_id)
        session.add(
            LoginSession(id=session_id, user_id=user.id, refresh_jti=jti, expires_at=expires_at)
        )
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            await session.exec(
                delete(LoginSession).where(col(LoginSession.expires_at) < datetime.now(UTC))
            )
        await session.commit()
        return pair

    async def refresh(self, session: AsyncSession, claims: dict[str, Any]) -> TokenPair:
        """A new pair for a verified refresh token, which is used up by this call."""
        user = await current_user_from_claims(session, claims)
        session_id = claims["sid"]
        pair, jti, expires_at = self._pair(user, session_id)
        swapped = await session.exec(
            update(LoginSession)
            .where(
                col(LoginSession.id) == session_id,
                col(LoginSession.user_id) == user.id,
                col(LoginSession.refresh_jti) == claims["jti"],
                col(LoginSession.revoked_at).is_(None),
            )
            .values(refresh_jti=jti, expires_at=expires_at)
        )
        if swapped.rowcount == 1:
            await session.commit()
            return pair
        if await self._end(session, session_id):
            log.warning("auth.refresh_token_reused", user_id=user.id, login_session=session_id)
        raise TokenRejected

    async def revoke(self, session: AsyncSession, claims: dict[str, Any]) -> None:
        """Log out: no refresh token of this token's login session works any more."""
        await self._end(session, claims["sid"])

    @staticmethod
    async def _end(session: AsyncSession, session_id: str) -> bool:
        """End a login session; False if it had ended (or expired and been pruned) already."""
        ended = await session.exec(
            update(LoginSession)
            .where(col(LoginSession.id) == session_id, col(LoginSession.revoked_at).is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        await session.commit()
        return ended.rowcount == 1
