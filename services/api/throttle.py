"""Login throttling: attempts per client address, failures per username, shared by API replicas.

Two limits guard ``POST /api/token/``. Every attempt counts against the client's address
(``RACKSMITH_TOKEN_RATE_LIMIT``), which also bounds the password-hashing work one client can
cause; every failed attempt counts against the username (``RACKSMITH_TOKEN_USERNAME_RATE_LIMIT``),
so guessing one account's password from many addresses is as slow as from one. The client's
address is the peer's, or — when the peer is a trusted proxy (``RACKSMITH_TRUSTED_PROXIES``) —
the right-most address of ``X-Forwarded-For`` that is not a trusted proxy: the one the nearest
trusted hop saw; anything left of it was written by the client and proves nothing.

Each limit is a moving window: the times of the last ``amount`` counted attempts. The windows
live in a JetStream key-value bucket, so every API replica sees the same counts; a write only
succeeds on the revision it read (compare-and-set), so concurrent attempts are all counted. With
no broker connection (or while it fails), a process falls back to windows in its own memory:
limits then hold per process, not across replicas.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import nats.errors
from limits import parse
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from starlette.datastructures import Headers

from services.api.errors import APIError
from shared.core.iprange import IPNetwork, parse_networks
from shared.core.log import get_logger
from shared.core.security import Fingerprinter
from shared.core.settings import Settings
from shared.messaging.streams import LOGIN_THROTTLE_BUCKET
from shared.platform.runtime import Runtime

log = get_logger(__name__)

# Rounds of read / compare-and-set before an attempt that keeps losing the race is refused.
CAS_ATTEMPTS = 5


@dataclass(frozen=True)
class Limit:
    name: str
    amount: int
    window_s: float

    @classmethod
    def parse(cls, name: str, text: str) -> Limit:
        item = parse(text)
        return cls(name, item.amount, float(item.get_expiry()))


class Throttled(APIError):
    def __init__(self, retry_after_s: float) -> None:
        wait = max(1, int(retry_after_s) + 1)
        super().__init__(
            429,
            f"Request was throttled. Expected available in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )


class WindowStore(Protocol):
    """Hit times per key, read and written with compare-and-set."""

    async def read(self, key: str) -> tuple[list[float], int]:
        """The times stored under ``key`` and the revision to write against (0: none yet)."""

    async def write(self, key: str, hits: list[float], revision: int) -> bool:
        """Store ``hits`` if ``key`` is still at ``revision``; False if someone wrote first."""


class MemoryStore:
    def __init__(self) -> None:
        self._windows: dict[str, tuple[list[float], int]] = {}

    async def read(self, key: str) -> tuple[list[float], int]:
        return self._windows.get(key, ([], 0))

    async def write(self, key: str, hits: list[float], revision: int) -> bool:
        if self._windows.get(key, ([], 0))[1] != revision:
            return False
        self._windows[key] = (hits, revision + 1)
        return True


class KvStore:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def read(self, key: str) -> tuple[list[float], int]:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return [], 0
        hits = json.loads(entry.value or b"[]")
        return [float(hit) for hit in hits], entry.revision or 0

    async def write(self, key: str, hits: list[float], revision: int) -> bool:
        value = json.dumps([round(hit, 3) for hit in hits]).encode()
        try:
            if revision:
                await self._kv.update(key, value, last=revision)
            else:
                await self._kv.create(key, value)
        except KeyWrongLastSequenceError:
            return False
        return True


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it in ``X-Forwarded-For``: bare, ``[v6]``, or with a port."""
    text = text.strip()
    candidates = [text]
    if text.startswith("["):
        candidates.append(text[1 : text.find("]")])
    elif text.count(":") == 1:
        candidates.append(text.partition(":")[0])
    for candidate in candidates:
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None


def client_address(peer: str | None, headers: Headers, trusted: Sequence[IPNetwork]) -> str:
    """Who is asking: the peer, or behind trusted proxies the address the nearest one saw."""
    if peer is None:
        return "unknown"

    def is_trusted(text: str) -> bool:
        address = parse_address(text)
        return address is not None and any(address in network for network in trusted)

    if not is_trusted(peer):
        return peer
    hops = [hop.strip() for value in headers.getlist("x-forwarded-for") for hop in value.split(",")]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not is_trusted(hop):
            address = parse_address(hop)
            return str(address) if address is not None else hop
    # Every hop is a proxy of ours: the request started inside; the left-most is its origin.
    return hops[0] if hops else peer


class LoginThrottle:
    def __init__(self, settings: Settings, runtime: Runtime, fingerprint: Fingerprinter) -> None:
        # Keys are keyed fingerprints: usernames and forwarded values are arbitrary text (a KV
        # key is not), and the shared bucket must not hold what was typed, nor a plain hash
        # of it that guesses undo.
        self.fingerprint = fingerprint
        self.per_address = Limit.parse("address", settings.token_rate_limit)
        self.per_username = Limit.parse("username", settings.token_username_rate_limit)
        self.trusted = parse_networks(settings.trusted_proxies.split(","))
        self._runtime = runtime
        self._memory = MemoryStore()
        self._kv: KvStore | None = None

    def client(self, peer: str | None, headers: Headers) -> str:
        return client_address(peer, headers, self.trusted)

    async def attempt(self, address: str, username: str) -> None:
        """Count an attempt from ``address``; raises ``Throttled`` if it or ``username`` is
        over its limit (a username over its limit is refused even with the right password)."""
        await self._count(self.per_address, address, record=True)
        await self._count(self.per_username, username, record=False)

    async def failed(self, username: str) -> None:
        await self._count(self.per_username, username, record=True)

    async def _store(self) -> WindowStore:
        client = self._runtime.nats
        if client is None or not client.is_connected:
            return self._memory
        if self._kv is None:
            self._kv = KvStore(await client.jetstream().key_value(LOGIN_THROTTLE_BUCKET))
        return self._kv

    async def _count(self, limit: Limit, value: str, *, record: bool) -> None:
        key = f"{limit.name}.{self.fingerprint(value, 40)}"
        try:
            wait = await self._window(await self._store(), limit, key, record=record)
        except (nats.errors.Error, BucketNotFoundError, TimeoutError, ValueError) as exc:
            log.warning("auth.throttle_store_unavailable", error=repr(exc), fallback="memory")
            wait = await self._window(self._memory, limit, key, record=record)
        if wait is not None:
            raise Throttled(wait)

    @staticmethod
    async def _window(store: WindowStore, limit: Limit, key: str, *, record: bool) -> float | None:
        """Seconds until ``key`` has room again, or None if it has room (and, with ``record``,
        this attempt was counted)."""
        for _ in range(CAS_ATTEMPTS):
            now = time.time()
            hits, revision = await store.read(key)
            recent = sorted(hit for hit in hits if hit > now - limit.window_s)
            if len(recent) >= limit.amount:
                return recent[-limit.amount] + limit.window_s - now
            if not record:
                return None
            recent.append(now)
            if await store.write(key, recent[-limit.amount :], revision):
                return None
        # Losing the race this often means a burst on one key: refuse rather than not count.
        return 1.0
