"""State of one simulated BMC: resources, sessions, counters and its current fault."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import secrets
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from bmclab.counters import Counters
from bmclab.faults import REQUEST_FAULTS, Fault, FaultKind
from bmclab.host import Host
from bmclab.latency import Latency
from bmclab.rules import MOCKUP_RULES, HostRules
from bmclab.tree import ResourceStore
from bmclab.updates import UpdateState

if TYPE_CHECKING:
    from bmclab.server import Listener


@dataclass(frozen=True)
class Behaviour:
    """Timing and limit knobs shared by every BMC of a lab."""

    username: str = "root"
    password: str = "calvin"  # noqa: S105 - public simulator default, like iDRAC's
    session_limit: int = 8
    session_timeout: float = 1800.0
    inflight_limit: int = 4
    queue_timeout: float = 10.0
    power_delay: float = 2.0
    power_on_holdoff: float = 3.0
    task_duration: float = 3.0
    # How long a BMC that restarts (after flashing itself, or Manager.Reset) refuses connections.
    bmc_reset_time: float = 5.0
    # Seconds the fake installer takes between fetching its image and calling home.
    install_time: float = 5.0
    # Bytes per Range request when a BMC reads a mounted image.
    media_chunk: int = 1 << 20
    drip_interval: float = 0.5
    flap_period: float = 5.0
    latency: Latency = field(default_factory=Latency)


@dataclass
class Session:
    id: str
    token: str
    username: str
    path: str
    last_used: float


class Bmc:
    """One BMC. Counters are plain attributes so tests can read them directly."""

    def __init__(
        self,
        *,
        index: int,
        address: str,
        port: int,
        kind: str,
        store: ResourceStore,
        behaviour: Behaviour,
        sessions_path: str,
        task_id_format: str = "{n}",
        fault: Fault | None = None,
        seed: int = 0,
        rules: HostRules = MOCKUP_RULES,
        update_style: str = "generic",
    ) -> None:
        self.index = index
        self.address = address
        self.port = port
        self.kind = kind
        self.store = store
        self.behaviour = behaviour
        self.sessions_path = sessions_path
        self.task_id_format = task_id_format
        self.rules = rules
        self.counters = Counters()
        self.updates = UpdateState(update_style)
        self.hosts: dict[str, Host] = {}
        self.rng = random.Random(f"latency:{seed}:{index}")
        self.sessions: dict[str, Session] = {}
        self.max_sessions = 0
        self.total_logins = 0
        self.failed_logins = 0
        # Every (user name, password) offered to this BMC, in a session POST or Basic header,
        # right or wrong; and those offered over a connection that presented the impostor's
        # certificate (``Lab.impersonate``): tests assert what a client sent to whom.
        self.credentials_received: list[tuple[str, str]] = []
        self.impostor_received: list[tuple[str, str]] = []
        self.impostor_context: ssl.SSLContext | None = None
        self.requests_served = 0
        self.inflight = asyncio.Semaphore(behaviour.inflight_limit)
        self.listener: Listener | None = None
        self.background: set[asyncio.Task[None]] = set()
        self._session_seq = 0
        self._task_seq = 0
        self._fault: Fault | None = None
        self._fault_until = 0.0
        self._flap_task: asyncio.Task[None] | None = None
        self.flap_down = False
        self.ghost_mounts_left = 0
        # Reads mounted images (bmclab.media); opened on first use.
        self.media_client: aiohttp.ClientSession | None = None
        if fault is not None:
            self.set_fault(fault)

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    # -- faults ---------------------------------------------------------------------------

    @property
    def fault(self) -> Fault | None:
        """The fault in force now; a timed ``busy:N`` lapses by itself."""
        if self._fault is not None and self._fault_until and time.monotonic() >= self._fault_until:
            self._fault = None
            self._fault_until = 0.0
        return self._fault

    @property
    def configured_fault(self) -> Fault | None:
        return self._fault

    def has(self, kind: FaultKind) -> bool:
        fault = self.fault
        return fault is not None and fault.kind is kind

    def set_fault(self, fault: Fault | str | None) -> None:
        if isinstance(fault, str):
            fault = Fault.parse(fault)
        self._stop_flap()
        self._fault = fault
        self._fault_until = 0.0
        self.ghost_mounts_left = 0
        if fault is None:
            return
        if fault.kind is FaultKind.GHOST_MOUNT:
            self.ghost_mounts_left = int(fault.arg) if fault.arg else 1
        if fault.kind is FaultKind.BUSY and fault.arg:
            self._fault_until = time.monotonic() + fault.arg
        if fault.kind is FaultKind.FLAP and self.listener is not None:
            self._start_flap()

    def clear_fault(self) -> None:
        self.set_fault(None)

    def request_fault(
        self, method: str, action: str | None, reset_type: str | None
    ) -> Fault | None:
        """The one-shot request fault aimed at this request; it is cleared when it fires."""
        fault = self.fault
        if fault is None or fault.kind not in REQUEST_FAULTS or fault.selector is None:
            return None
        return fault if fault.selector.matches(method, action, reset_type) else None

    def counts(self) -> dict[str, Any]:
        """Every counter of this BMC as plain JSON (also served at ``/bmclab/counters``)."""
        return {
            **self.counters.to_dict(),
            "requests_served": self.requests_served,
            "total_logins": self.total_logins,
            "failed_logins": self.failed_logins,
            "open_sessions": self.open_sessions,
            "max_sessions": self.max_sessions,
        }

    def host(self, path: str) -> Host:
        """The simulated host of the ComputerSystem at `path`."""
        host = self.hosts.get(path)
        if host is None:
            host = self.hosts[path] = Host(self, path)
        return host

    def on_listening(self, listener: Listener) -> None:
        self.listener = listener
        fault = self._fault
        if fault is not None and fault.kind is FaultKind.BUSY and fault.arg:
            # "busy for N seconds" counts from when the BMC starts listening.
            self._fault_until = time.monotonic() + fault.arg
        if self.has(FaultKind.FLAP) and self._flap_task is None:
            self._start_flap()

    def _start_flap(self) -> None:
        fault = self._fault
        period = fault.arg if fault and fault.arg else self.behaviour.flap_period
        self._flap_task = asyncio.get_running_loop().create_task(self._flap(period))

    def _stop_flap(self) -> None:
        if self._flap_task is not None:
            self._flap_task.cancel()
            self._flap_task = None
        if self.flap_down and self.listener is not None:
            self.spawn(self.listener.open())
        self.flap_down = False

    async def _flap(self, period: float) -> None:
        assert self.listener is not None
        while True:
            await asyncio.sleep(period)
            self.flap_down = True
            await self.listener.close()
            await asyncio.sleep(period)
            await self.listener.open()
            self.flap_down = False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a background coroutine, keeping a reference so it is not collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def stop(self) -> None:
        self._stop_flap_silently()
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.media_client is not None:
            with contextlib.suppress(Exception):
                await self.media_client.close()

    def _stop_flap_silently(self) -> None:
        if self._flap_task is not None:
            self._flap_task.cancel()
            self._flap_task = None

    # -- authentication and sessions -----------------------------------------------------

    def credentials_valid(self, username: str, password: str) -> bool:
        if self.has(FaultKind.BADCREDS):
            return False
        b = self.behaviour
        return secrets.compare_digest(username, b.username) and secrets.compare_digest(
            password, b.password
        )

    def offered(self, username: str, password: str, *, impostor: bool) -> None:
        self.credentials_received.append((username, password))
        if impostor:
            self.impostor_received.append((username, password))

    def authenticate(
        self, authorization: str | None, token: str | None, *, impostor: bool = False
    ) -> bool:
        if token:
            session = self.live_sessions().get(token)
            if session is None:
                return False
            session.last_used = time.monotonic()
            return True
        if authorization and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            self.offered(user, password, impostor=impostor)
            if self.credentials_valid(user, password):
                return True
            self.failed_logins += 1
        return False

    def live_sessions(self) -> dict[str, Session]:
        """Sessions not idle past the timeout; expired ones are dropped on the way."""
        deadline = time.monotonic() - self.behaviour.session_timeout
        for token in [t for t, s in self.sessions.items() if s.last_used < deadline]:
            del self.sessions[token]
        return self.sessions

    @property
    def open_sessions(self) -> int:
        return len(self.live_sessions())

    def create_session(self, username: str) -> Session | None:
        """A new session, or None when the session table is full."""
        if len(self.live_sessions()) >= self.behaviour.session_limit:
            return None
        self._session_seq += 1
        session_id = f"{self._session_seq}{secrets.token_hex(4)}"
        session = Session(
            session_id,
            secrets.token_hex(16),
            username,
            f"{self.sessions_path.rstrip('/')}/{session_id}",
            time.monotonic(),
        )
        self.sessions[session.token] = session
        self.total_logins += 1
        self.max_sessions = max(self.max_sessions, len(self.sessions))
        return session

    def session_by_path(self, path: str) -> Session | None:
        for session in self.live_sessions().values():
            if session.path == path:
                return session
        return None

    def delete_session(self, session: Session) -> None:
        self.sessions.pop(session.token, None)

    def next_task_id(self) -> str:
        self._task_seq += 1
        return self.task_id_format.format(n=self._task_seq, i=self._task_seq - 1)
