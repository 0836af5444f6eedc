"""Logged-in BMC sessions kept for reuse by work that comes back to the same BMC every few
seconds — a job polling PowerState or a task for half an hour.

A login per look would cost each poll a session POST and a DELETE, and BMCs have few sessions
and slow logins (iDRAC: ~8 sessions, a second per login). The cache keeps one session per
(BMC, user, password, TLS policy) in a process, shared by everyone who borrows it (the session
already caps requests per BMC), and logs it out after ``idle_s`` unused. A session that failed
in a way that says the login or the connection is no good is dropped, and the next borrower
logs in afresh.

A session never outlives the trust it was opened under. The TLS policy (the pinned certificate)
is part of the key, and a borrower with another policy for the same BMC — its certificate
changed and was accepted — ends the sessions opened under the old one: they are logged out and
never handed out again. A certificate the policy refuses on any new connection of a cached
session drops it (nothing but the handshake reached the BMC).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from shared.core.log import get_logger
from shared.redfish.client import RedfishPool, RedfishSession
from shared.redfish.errors import AuthenticationFailed, BmcUnreachable, CertificateMismatch
from shared.redfish.tls import TlsPolicy

log = get_logger(__name__)

# Failures after which a cached session is not worth keeping.
_DISCARD = (AuthenticationFailed, BmcUnreachable, CertificateMismatch)
_Key = tuple[str, str, str, TlsPolicy]


@dataclass
class _Entry:
    session: RedfishSession
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    broken: bool = False


class SessionCache:
    def __init__(self, pool: RedfishPool, *, idle_s: float = 60.0) -> None:
        self.pool = pool
        self.idle_s = idle_s
        self._entries: dict[_Key, _Entry] = {}
        self._opening: dict[_Key, asyncio.Lock] = {}

    @asynccontextmanager
    async def session(
        self,
        base_url: str,
        username: str,
        password: str,
        tls: TlsPolicy,
        *,
        vendor: str | None = None,
    ) -> AsyncIterator[RedfishSession]:
        """A logged-in session to the BMC; use ``async with``. Errors are the session's."""
        key = (base_url, username, hashlib.sha256(password.encode()).hexdigest(), tls)
        await self._reap()
        await self._end_other_trust(base_url, tls)
        entry = await self._entry(key, base_url, username, password, tls, vendor)
        entry.users += 1
        try:
            yield entry.session
        except _DISCARD:
            entry.broken = True
            raise
        finally:
            entry.users -= 1
            entry.last_used = time.monotonic()
            if entry.broken:
                await self._drop(key, entry)

    async def _entry(
        self,
        key: _Key,
        base_url: str,
        username: str,
        password: str,
        tls: TlsPolicy,
        vendor: str | None,
    ) -> _Entry:
        entry = self._entries.get(key)
        if entry is not None and not entry.broken:
            return entry
        # One login per key at a time: concurrent borrowers wait for it instead of each
        # opening a session of their own.
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is None or entry.broken:
                session = self.pool.session(base_url, username, password, tls, vendor=vendor)
                await session.__aenter__()
                entry = self._entries[key] = _Entry(session)
            return entry

    async def _end_other_trust(self, base_url: str, tls: TlsPolicy) -> None:
        """End the sessions to ``base_url`` opened under another TLS policy (those in use are
        logged out when their last borrower is done)."""
        stale = [(k, e) for k, e in self._entries.items() if k[0] == base_url and k[3] != tls]
        for key, entry in stale:
            entry.broken = True
            await self._drop(key, entry)

    async def _drop(self, key: _Key, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
        if entry.users == 0:
            await self._close(entry)

    async def _reap(self) -> None:
        """Log out of sessions nobody used for ``idle_s``."""
        cutoff = time.monotonic() - self.idle_s
        idle = [(k, e) for k, e in self._entries.items() if e.users == 0 and e.last_used < cutoff]
        for key, entry in idle:
            # Each logout awaits: a concurrent reap (another step's borrow) may have taken this
            # entry meanwhile, or a borrower picked it up again.
            if self._entries.get(key) is not entry or entry.users:
                continue
            del self._entries[key]
            await self._close(entry)

    async def _close(self, entry: _Entry) -> None:
        try:
            await entry.session.__aexit__(None, None, None)
        except Exception as exc:  # logging out is best effort; the BMC expires it anyway
            log.debug("redfish.cached_logout_failed", error=str(exc))

    async def close(self) -> None:
        """Log out of every cached session (process shutdown)."""
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await self._close(entry)
