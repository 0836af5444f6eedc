"""Which user a token stands for, and the login sessions refresh tokens belong to.

Every token carries the user's id, the user's token version (``ver``) and its login session
(``sid``). A token is good only while the user exists, is active and still has that version:
deleting a user (ids are never reused), deactivating it, changing its password, taking a
superuser's rights or a group away raise the version and end every token issued before.

The check on each request (``Principals.of_claims``) compares the claims with the user's
standing — version, active, superuser, username — kept in a short-lived in-process cache
(``RACKSMITH_AUTH_CACHE_S``, 5 s by default), so that an authenticated request does not read the
database. Any change to a user written through the ORM in this process (a new version, a
deactivation, a lost superuser flag, a deletion) drops the user's entry at flush and again at
commit, so this process never acts on a stale standing. Another process (a second API replica)
notices the change when its entry expires: a revoked token may keep working there for at most
the cache's lifetime. Refreshing a token and an event stream's re-check read the database
(``current_user_from_claims``).

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
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.core.db import Database
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


@dataclass(frozen=True)
class Principal:
    """Whom a request acts for: what authorisation reads, without the user's row."""

    id: int
    username: str
    is_superuser: bool

    @classmethod
    def of(cls, user: User) -> Principal:
        assert user.id is not None
        return cls(user.id, user.username, user.is_superuser)


async def current_user_from_claims(session: AsyncSession, claims: dict[str, Any]) -> User:
    """The user a verified token stands for, read now; ``TokenRejected`` if it no longer does."""
    user = await session.get(User, claims["user_id"])
    if user is None or not user.is_active or user.token_version != claims["ver"]:
        raise TokenRejected
    return user


@dataclass(frozen=True)
class _Standing:
    principal: Principal | None  # None: no such user
    version: int
    active: bool
    expires_at: float


# Every live cache of this process: a user changed through any session drops out of all of them.
_CACHES: weakref.WeakSet[Principals] = weakref.WeakSet()
_CHANGED_USERS = "racksmith.changed_users"


class Principals:
    """The standing of the users whose tokens arrive, cached for ``ttl_s`` seconds."""

    def __init__(self, db: Database, ttl_s: float) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._entries: dict[int, _Standing] = {}
        # Bumped by every invalidation: a read that started before one must not be cached.
        self._generation = 0
        _CACHES.add(self)

    async def of_claims(self, claims: dict[str, Any]) -> Principal:
        """Whom a verified access token stands for; ``TokenRejected`` if it no longer does."""
        user_id: int = claims["user_id"]
        standing = self._entries.get(user_id)
        if standing is None or standing.expires_at <= time.monotonic():
            standing = await self._read(user_id)
        if standing.principal is None or not standing.active or standing.version != claims["ver"]:
            raise TokenRejected
        return standing.principal

    async def _read(self, user_id: int) -> _Standing:
        generation = self._generation
        stmt = select(User.username, User.is_superuser, User.is_active, User.token_version).where(
            col(User.id) == user_id
        )
        async with self.db.session() as session:
            row = (await session.exec(stmt)).one_or_none()
        expires_at = time.monotonic() + self.ttl_s
        if row is None:
            standing = _Standing(None, 0, False, expires_at)
        else:
            username, superuser, active, version = row
            principal = Principal(user_id, username, superuser)
            standing = _Standing(principal, version, active, expires_at)
        if generation == self._generation and self.ttl_s > 0:
            if len(self._entries) > MAX_CACHED_USERS:
                self._entries.clear()
            self._entries[user_id] = standing
        return standing

    def forget(self, user_ids: Iterable[int]) -> None:
        self._generation += 1
        for user_id in user_ids:
            self._entries.pop(user_id, None)


# Beyond this many users the cache starts over rather than grow without bound.
MAX_CACHED_USERS = 100_000


def _forget(user_ids: set[int]) -> None:
    for cache in list(_CACHES):
        cache.forget(user_ids)


@event.listens_for(Session, "after_flush")
def _users_flushed(session: Session, _context: object) -> None:
    # Dropped at flush (this session's later reads, a concurrent request) and again at commit
    # (a read between the two saw the old row).
    changed = {
        obj.id
        for obj in chain(session.dirty, session.deleted)
        if isinstance(obj, User) and obj.id is not None
    }
    if changed:
        session.info.setdefault(_CHANGED_USERS, set()).update(changed)
        _forget(changed)


@event.listens_for(Session, "after_commit")
def _users_committed(session: Session) -> None:
    changed = session.info.pop(_CHANGED_USERS, None)
    if changed:
        _forget(changed)


@event.listens_for(Session, "after_rollback")
def _users_rolled_back(session: Session) -> None:
    session.info.pop(_CHANGED_USERS, None)


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
