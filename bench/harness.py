"""Shared plumbing of the benchmarks: ``racksmith`` subprocesses, CPU accounting, the machine.

Not run on its own. Used by ``scan.py``, ``inventory.py``, ``api_list.py`` and ``scale.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from cryptography.fernet import Fernet
from sqlalchemy import URL, make_url

from shared.core.log import configure_logging
from shared.core.settings import Settings
from shared.platform.natsserver import EmbeddedNatsServer, free_port
from shared.platform.orphans import die_with_parent

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- processes ------------------------------------------------------------------------------------


class Child:
    """A subprocess in its own session, logging to a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def wait_ready(self, url: str, within_s: float = 60.0) -> None:
        """Poll ``url`` until it answers 200; fail if the process exits first."""
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {within_s:g} s:\n{self.log_tail()}")

    async def run(self, within_s: float = 120.0) -> None:
        """Start, wait for exit, fail loudly on a non-zero status."""
        await self.start()
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), within_s)
        if code != 0:
            raise RuntimeError(f"{self.name} failed ({code}):\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await process.wait()


def work_dir(
    stack: contextlib.AsyncExitStack, prefix: str, keep_logs: bool
) -> tuple[Path, list[bool]]:
    """A temporary folder for logs and state, removed at exit unless ``keep[0]`` is set (a
    script sets it when a check fails, so the logs survive)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    keep = [keep_logs]

    def remove() -> None:
        if keep[0]:
            print(f"Logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    stack.callback(remove)
    return tmp, keep


async def embedded_nats(stack: contextlib.AsyncExitStack, tmp: Path) -> EmbeddedNatsServer:
    """A nats-server with JetStream for one bench run, stopped with ``stack``."""
    server = EmbeddedNatsServer(tmp / "nats")
    await server.start()
    stack.push_async_callback(server.stop)
    return server


async def start_children(stack: contextlib.AsyncExitStack, *children: Child) -> None:
    """Start ``children`` in order, each stopped when ``stack`` closes."""
    for child in children:
        stack.push_async_callback(child.stop)
        await child.start()


async def start_worker(
    stack: contextlib.AsyncExitStack, kind: str, env: dict[str, str], tmp: Path
) -> Child:
    """``racksmith worker KIND`` on its own probe port, ready; stopped with ``stack``."""
    port = free_port()
    child = Child(
        kind,
        racksmith("worker", kind),
        {**env, "RACKSMITH_WORKER_HEALTH_PORT": str(port)},
        tmp / f"{kind}.log",
    )
    stack.push_async_callback(child.stop)
    await child.start()
    await child.wait_ready(f"http://127.0.0.1:{port}/readyz")
    return child


def platform_env(tmp: Path, database_url: str, nats_url: str, **settings: str) -> dict[str, str]:
    """The environment of every ``racksmith`` process of one bench run (same keys for all)."""
    return {
        **os.environ,
        "RACKSMITH_STATE_DIR": str(tmp / "state"),
        "RACKSMITH_DATABASE_URL": database_url,
        "RACKSMITH_NATS_URL": nats_url,
        "RACKSMITH_SECRET_KEY": secrets.token_urlsafe(48),
        "RACKSMITH_CREDENTIAL_KEY": Fernet.generate_key().decode(),
        "RACKSMITH_LOG_LEVEL": "WARNING",
        "RACKSMITH_LOG_FORMAT": "json",
        **settings,
    }


async def migrate_and_create_admin(env: dict[str, str], tmp: Path, username: str) -> str:
    """``racksmith migrate`` then ``createsuperuser``; returns the generated password."""
    await Child("migrate", racksmith("migrate"), env, tmp / "migrate.log").run()
    password = secrets.token_urlsafe(16)
    await Child(
        "createsuperuser",
        # `=`: a generated password may start with "-".
        racksmith("createsuperuser", "--username", username, f"--password={password}"),
        env,
        tmp / "createsuperuser.log",
    ).run()
    return password


async def create_auth_profile(client: httpx.AsyncClient, username: str, password: str) -> int:
    """A Redfish authentication profile for the lab's BMCs with their credentials, through the
    API; its id."""
    profile = (
        await client.post(
            "/api/node_discovery/auth_profile/",
            json={"node_classification": "BMC lab", "bmc": "redfish"},
        )
    ).json()["id"]
    (
        await client.post(
            f"/api/node_discovery/auth_profile/{profile}/credentials/",
            json={"username": username, "password": password},
        )
    ).raise_for_status()
    return int(profile)


def run_benchmark(work: Coroutine[Any, Any, object]) -> int:
    """A benchmark's ``main``: quiet logging, run, exit 130 on Ctrl-C (everything started is
    stopped by then). A benchmark reports: missing a target is a finding, not a failure, so the
    exit status is 0 unless ``work`` returns an int status of its own."""
    configure_logging(Settings(log_level="WARNING", log_format="console"))
    try:
        result = asyncio.run(work)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nInterrupted; everything started by the benchmark was stopped.", file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def racksmith(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def raise_fd_limit(needed: int) -> None:
    """Raise the soft open-files limit towards ``needed`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --- the database -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPostgres:
    app_url: str  # for Racksmith (asyncpg)
    dsn: str  # for a raw driver (libpq form)
    version: str
    where: str  # host:port


async def empty_postgres_database(url: str, bench_db: str) -> BenchPostgres:
    """Create ``bench_db`` on the URL's server if needed and empty its public schema. The URL's
    own database (or ``postgres``) is only the maintenance connection; nothing else is touched."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", bench_db):
        raise SystemExit(f"bench: --pg-database {bench_db!r} must be a plain lower-case name")
    parsed = make_url(url)
    maintenance_db = parsed.database if parsed.database not in (None, bench_db) else "postgres"

    def dsn(u: URL, database: str) -> str:
        return u.set(drivername="postgresql", database=database).render_as_string(
            hide_password=False
        )

    where = f"{parsed.host}:{parsed.port or 5432}"
    print(
        f"WARNING: PostgreSQL database {bench_db!r} on {where} is used by this benchmark: "
        "its public schema is dropped and recreated now.",
        flush=True,
    )
    maintenance = await asyncpg.connect(dsn(parsed, maintenance_db or "postgres"))
    try:
        version = await maintenance.fetchval("SHOW server_version")
        exists = await maintenance.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", bench_db
        )
        if not exists:
            await maintenance.execute(f'CREATE DATABASE "{bench_db}"')
    finally:
        await maintenance.close()
    conn = await asyncpg.connect(dsn(parsed, bench_db))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    app_url = parsed.set(drivername="postgresql+asyncpg", database=bench_db)
    return BenchPostgres(
        app_url.render_as_string(hide_password=False), dsn(parsed, bench_db), version, where
    )


async def prepare_database(url: str, bench_db: str, tmp: Path) -> tuple[str, str]:
    """The SQLAlchemy URL the platform uses, and a description. PostgreSQL: own, empty database."""
    if url == "sqlite" or url.startswith("sqlite"):
        path = tmp / "racksmith.db"
        return f"sqlite+aiosqlite:///{path}", f"SQLite file {path}"
    if not url.startswith("postgresql"):
        raise SystemExit(f"bench: unsupported database URL {url!r}")
    pg = await empty_postgres_database(url, bench_db)
    return (
        pg.app_url,
        f"PostgreSQL {pg.version}, database {bench_db} on {pg.where} (emptied by this benchmark)",
    )


# --- CPU accounting -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Every ``postgres`` process on this host (backends included)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if stat.read_text().startswith(f"{stat.parent.name} (postgres)"):
                pids.append(int(stat.parent.name))
    return pids


# --- the machine ----------------------------------------------------------------------------------


def machine_description(
    database: str, extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("cpus (nproc)", str(usable)),
        ("cpu model", cpu),
        ("memory", memory),
        ("os", platform.platform()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("database", database),
        *extra,
    ]
