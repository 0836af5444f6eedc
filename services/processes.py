"""What each ``racksmith`` command runs: the whole platform in one process, or one service.

The three shapes share their pieces: ``up`` = embedded NATS + migrations + admin bootstrap + API +
every worker; ``api`` and ``worker`` are the production processes, one service each.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import TextIO

import uvicorn
from pydantic import SecretStr

from bmclab.fleet import Lab, LabConfig
from services import workers
from services.api.app import create_app
from services.api.routes.events import end_streams
from services.artifacts.server import ArtifactServer
from services.artifacts.server import start as start_artifact_server
from shared.artifacts.store import ArtifactStore, open_store
from shared.core import statedir
from shared.core.db import Database
from shared.core.log import get_logger
from shared.core.settings import Settings
from shared.messaging.permissions import EVENTS_READER, PLATFORM, relayed_entities
from shared.observability import tracing
from shared.platform import migrate
from shared.platform.bootstrap import AdminAccount, ensure_admin, ensure_defaults
from shared.platform.natsserver import EmbeddedNatsServer, port_is_free
from shared.platform.runtime import Runtime

log = get_logger(__name__)


class StartupError(RuntimeError):
    """A condition the operator must fix before the command can run; printed without a trace."""


class _ApiServer(uvicorn.Server):
    # We own signal handling (one Ctrl-C stops API, workers and the child NATS in order), so
    # uvicorn must not capture and re-raise signals itself.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _trace_as(service: str) -> None:
    """Tracing for this process, if ``OTEL_*`` configures an exporter (before any runtime is
    built: the broker takes its middlewares at construction)."""
    try:
        tracing.configure(service)
    except tracing.TracingConfigError as exc:
        raise StartupError(str(exc)) from None


def _require_port(host: str, port: int, what: str, setting: str) -> None:
    if port and not port_is_free(port, host):
        raise StartupError(
            f"{what} port {host}:{port} is already in use; choose another with --port or {setting}."
        )


async def serve_api(
    runtime: Runtime, stop: asyncio.Event, on_listening: Callable[[], None] | None = None
) -> None:
    settings = runtime.settings
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # uvicorn would take the client address from X-Forwarded-For when the peer is
        # 127.0.0.1; which proxies to believe is RACKSMITH_TRUSTED_PROXIES' call alone.
        proxy_headers=False,
    )
    server = _ApiServer(config)
    serving = asyncio.create_task(server.serve())
    # Announce only once the socket accepts connections, so whoever reads the banner can
    # connect straight away.
    while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn offers only a flag)
        await asyncio.sleep(0.02)
    if server.started and on_listening is not None:
        on_listening()
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    # uvicorn waits for open responses before it stops, and event streams never end by themselves.
    end_streams(app)
    stopping.cancel()
    await serving


@asynccontextmanager
async def platform(
    settings: Settings, *, embedded_nats: bool, relays: frozenset[str] | None = None
) -> AsyncIterator[Runtime]:
    """A connected runtime; with ``embedded_nats`` a child nats-server is started first (and
    connected to as its ``platform`` user). ``relays``: see ``Runtime``."""
    async with AsyncExitStack() as stack:
        nats_url = settings.nats_url
        if nats_url is None:
            if not embedded_nats:
                raise StartupError("RACKSMITH_NATS_URL must be set for this command.")
            server = EmbeddedNatsServer(settings.state_dir / "nats", port=settings.nats_port)
            await stack.enter_async_context(server)
            nats_url = server.url
            settings = settings.model_copy(
                update={
                    "nats_user": PLATFORM,
                    "nats_password": SecretStr(server.password(PLATFORM)),
                }
            )
        runtime = Runtime(settings, nats_url, relays=relays)
        stack.push_async_callback(runtime.close)
        await runtime.connect()
        yield runtime


def print_banner(settings: Settings, admin: AdminAccount, runtime: Runtime, out: TextIO) -> None:
    url = f"http://{settings.host}:{settings.port}"
    embedded = settings.nats_url is None
    users_file = (settings.state_dir / "nats" / "users.json").resolve() if embedded else None
    lines = [
        "",
        f"Racksmith is running: {url}/api/",
        f"  API docs:   {url}/api/schema/swagger-ui/",
        f"  events:     {url}/api/schema/asyncapi/viewer/ (SSE: {url}/api/events/stream/)",
        f"  artifacts:  {settings.effective_artifact_url}/  (BMCs fetch firmware and OS images)",
        f"  NATS:       {runtime.nats_url}  (stream RACKSMITH_EVENTS, docs/events.md)",
        *(
            [f"              user `{EVENTS_READER}`, password in {users_file}"]
            if users_file is not None
            else []
        ),
        f"  database:   {settings.effective_database_url}",
        f"  state dir:  {settings.state_dir.resolve()}",
    ]
    if admin.generated_password:
        lines += [
            f"  admin user: {admin.username}",
            f"  password:   {admin.generated_password}   (shown once; change it or set "
            "RACKSMITH_ADMIN_PASSWORD)",
        ]
    else:
        lines.append(f"  admin user: {admin.username} (existing account)")
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), file=out, flush=True)


def print_lab_banner(lab: Lab, out: TextIO) -> None:
    """What to paste into the guide's walkthrough to use the lab instead of a real rack."""
    config = lab.config
    addresses = [entry.address for entry in lab.manifest]
    faulty = sum(1 for entry in lab.manifest if entry.fault)
    scan_range = {
        "name": "BMC lab",
        "ip_from": addresses[0],
        "ip_to": addresses[-1],
        "ports": [config.port],
    }
    lines = [
        f"BMC lab: {len(addresses)} simulated BMCs, {addresses[0]} to {addresses[-1]} "
        f"port {config.port} ({faulty} with faults)",
        f"  scan range:   {json.dumps(scan_range)}",
        f"  auth profile: {json.dumps({'node_classification': 'BMC lab', 'bmc': 'redfish'})}",
        "  credentials:  " + json.dumps({"username": config.username, "password": config.password}),
        "",
    ]
    print("\n".join(lines), file=out, flush=True)


def allow_lab_network(settings: Settings, lab: LabConfig) -> Settings:
    """Discovery refuses loopback unless an allowed network names it: ``up --lab`` names its
    own lab's network, and keeps every other range as allowed as it was."""
    allowed = settings.scan_allowed_networks.strip() or "0.0.0.0/0,::/0"
    return settings.model_copy(update={"scan_allowed_networks": f"{allowed},{lab.network}"})


@asynccontextmanager
async def serving_artifacts(
    settings: Settings, db: Database, store: ArtifactStore
) -> AsyncIterator[None]:
    """The BMC-facing artifact server on its own listener, for the life of the block."""
    server = ArtifactServer(db, store)
    runner = await start_artifact_server(server, settings.artifact_host, settings.artifact_port)
    try:
        yield
    finally:
        await runner.cleanup()


async def run_up(settings: Settings, out: TextIO, *, lab: LabConfig | None = None) -> None:
    _require_port(settings.host, settings.port, "API", "RACKSMITH_PORT")
    if lab is not None:
        settings = allow_lab_network(settings, lab)
    _trace_as("racksmith")
    _require_port(
        settings.artifact_host, settings.artifact_port, "Artifact", "RACKSMITH_ARTIFACT_PORT"
    )
    # Also tightens what an older version left readable to other local users.
    statedir.make_private(settings.state_dir)
    stop = _stop_event()
    async with platform(settings, embedded_nats=True) as runtime, AsyncExitStack() as stack:
        await migrate.upgrade(runtime.db.engine)
        await ensure_defaults(runtime.db)
        admin = await ensure_admin(runtime.db, settings)
        workers.attach(runtime, list(workers.KINDS))
        await runtime.start_consuming()
        await stack.enter_async_context(serving_artifacts(settings, runtime.db, runtime.artifacts))
        running_lab = await stack.enter_async_context(Lab(lab)) if lab else None

        def announce() -> None:
            print_banner(settings, admin, runtime, out)
            if running_lab is not None:
                print_lab_banner(running_lab, out)

        await serve_api(runtime, stop, announce)
    print("Racksmith stopped.", file=out, flush=True)


async def run_api(settings: Settings) -> None:
    _require_port(settings.host, settings.port, "API", "RACKSMITH_PORT")
    _trace_as("racksmith-api")
    stop = _stop_event()
    relays = relayed_entities(["api"])
    async with platform(settings, embedded_nats=False, relays=relays) as runtime:
        if not await migrate.is_current(runtime.db.engine):
            log.warning("database.not_migrated", hint="run `racksmith migrate`")
        await serve_api(runtime, stop)


async def run_worker(settings: Settings, kinds: list[str]) -> None:
    _require_port("0.0.0.0", settings.worker_health_port, "Health", "RACKSMITH_WORKER_HEALTH_PORT")  # noqa: S104
    _trace_as("racksmith-" + "-".join(kinds))
    stop = _stop_event()
    relays = relayed_entities(kinds)
    async with platform(settings, embedded_nats=False, relays=relays) as runtime:
        workers.attach(runtime, kinds)
        await runtime.start_consuming()
        health = await workers.start_health_server(
            runtime,
            "0.0.0.0",  # noqa: S104  (probes come from the kubelet, not loopback)
            settings.worker_health_port,
        )
        log.info("worker.started", kinds=kinds)
        try:
            await stop.wait()
        finally:
            await health.cleanup()
        log.info("worker.stopping", kinds=kinds)


async def run_artifacts(settings: Settings) -> None:
    """The artifact server alone (production): needs the database and the store, not NATS."""
    _require_port(
        settings.artifact_host, settings.artifact_port, "Artifact", "RACKSMITH_ARTIFACT_PORT"
    )
    stop = _stop_event()
    db = Database(settings.effective_database_url, echo=settings.database_echo)
    try:
        async with serving_artifacts(settings, db, open_store(settings)):
            log.info("artifacts.started", url=settings.effective_artifact_url)
            await stop.wait()
    finally:
        await db.dispose()


async def run_migrate(settings: Settings) -> None:
    """Upgrade the database; with an external NATS also declare streams and consumers."""
    db = Database(settings.effective_database_url)
    try:
        await migrate.upgrade(db.engine)
        await ensure_defaults(db)
    finally:
        await db.dispose()
    if settings.nats_url:
        # Declares streams and consumers; relays nothing.
        runtime = Runtime(settings, settings.nats_url, relays=frozenset())
        try:
            await runtime.connect()
        finally:
            await runtime.close()
