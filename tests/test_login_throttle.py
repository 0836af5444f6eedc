"""Login throttling (issue 16, finding 6): per client behind trusted proxies, per username across
addresses, shared by API replicas through NATS — and the failed-login log line keeps what was
typed to itself (finding 7)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from services.processes import serve_api
from shared.platform.natsserver import free_port
from shared.platform.runtime import Runtime
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, make_settings

PROXY = "10.77.0.2"
TRUSTED = "10.77.0.0/24"

AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def _address() -> str:
    """A client address no other test uses (the throttle's windows outlive a test)."""
    return f"198.51.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest.fixture
def api(runtime: Runtime, session_dir: Path, database_url: str) -> AppFactory:
    """An API app with its own settings; ``broker=True`` connects it to the suite's NATS, whose
    key-value bucket then holds the throttle's windows."""

    @asynccontextmanager
    async def open_app(
        *, peer: str = PROXY, broker: bool = True, **settings: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        values = {"token_rate_limit": "1000/minute", "token_username_rate_limit": "1000/minute"}
        config = make_settings(session_dir, database_url, runtime.nats_url, **(values | settings))
        app_runtime = Runtime(config, runtime.nats_url)
        if broker:
            await app_runtime.connect()
        transport = httpx.ASGITransport(app=create_app(app_runtime), client=(peer, 40000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client
        finally:
            if broker:
                await app_runtime.close()

    return open_app


async def _login(
    client: httpx.AsyncClient, username: str, password: str, forwarded: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return await client.post(
        "/api/token/", json={"username": username, "password": password}, headers=headers
    )


def _throttled(response: httpx.Response) -> bool:
    if response.status_code != 429:
        return False
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["detail"].startswith("Request was throttled.")
    return True


async def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
    api: AppFactory, unique: str
) -> None:
    attacker, bystander = _address(), _address()
    async with api(token_rate_limit="20/minute", trusted_proxies=TRUSTED) as client:
        for _ in range(20):
            assert (await _login(client, f"x-{unique}", "wrong", attacker)).status_code == 401
        assert _throttled(await _login(client, f"x-{unique}", "wrong", attacker))
        # Everyone reaches the API through the same proxy; the others still get in.
        ok = await _login(client, ADMIN_USERNAME, ADMIN_PASSWORD, f"{bystander}, {PROXY}")
        assert ok.status_code == 200


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(api: AppFactory) -> None:
    """An attacker who sets X-Forwarded-For himself cannot make every attempt a new client."""
    async with api(peer=_address(), token_rate_limit="3/minute", trusted_proxies=TRUSTED) as client:
        statuses = [
            (await _login(client, "nobody", "wrong", _address())).status_code for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        assert _throttled(await _login(client, "nobody", "wrong", _address()))


async def test_only_the_hop_a_trusted_proxy_saw_counts(api: AppFactory) -> None:
    """Left of what the proxy appended is whatever the client sent: not believed."""
    client_address = _address()
    async with api(token_rate_limit="3/minute", trusted_proxies=TRUSTED) as client:
        for _ in range(3):
            forged = f"{_address()}, {client_address}"
            assert (await _login(client, "nobody", "wrong", forged)).status_code == 401
        forged = f"{_address()}, {client_address}"
        assert _throttled(await _login(client, "nobody", "wrong", forged))


async def test_per_username_limit_holds_while_addresses_rotate(
    api: AppFactory, client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    username = f"target-{unique}"
    created = await client.post(
        "/api/users/",
        json={"username": username, "password": "right-password-1"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    async with api(token_username_rate_limit="3/minute", trusted_proxies=TRUSTED) as app:
        for _ in range(3):
            assert (await _login(app, username, "guess", _address())).status_code == 401
        # The right password from yet another address: the username is locked for now.
        assert _throttled(await _login(app, username, "right-password-1", _address()))
        # Other accounts are not.
        assert (await _login(app, ADMIN_USERNAME, ADMIN_PASSWORD, _address())).status_code == 200


async def test_successful_logins_do_not_use_up_the_username_limit(
    api: AppFactory, unique: str
) -> None:
    async with api(token_username_rate_limit="2/minute", trusted_proxies=TRUSTED) as app:
        for _ in range(4):
            ok = await _login(app, ADMIN_USERNAME, ADMIN_PASSWORD, _address())
            assert ok.status_code == 200


async def test_replicas_sharing_one_nats_share_the_limits(api: AppFactory, unique: str) -> None:
    address, username = _address(), f"shared-{unique}"
    async with (
        api(token_rate_limit="4/minute", trusted_proxies=TRUSTED) as one,
        api(token_rate_limit="4/minute", trusted_proxies=TRUSTED) as two,
    ):
        for replica in (one, two, one, two):
            assert (await _login(replica, username, "wrong", address)).status_code == 401
        assert _throttled(await _login(one, username, "wrong", address))
        assert _throttled(await _login(two, username, "wrong", address))
    async with (
        api(token_username_rate_limit="2/minute", trusted_proxies=TRUSTED) as one,
        api(token_username_rate_limit="2/minute", trusted_proxies=TRUSTED) as two,
    ):
        assert (await _login(one, f"u-{unique}", "wrong", _address())).status_code == 401
        assert (await _login(two, f"u-{unique}", "wrong", _address())).status_code == 401
        assert _throttled(await _login(one, f"u-{unique}", "wrong", _address()))


async def test_without_a_broker_the_limit_holds_per_process(api: AppFactory) -> None:
    async with api(broker=False, token_rate_limit="2/minute") as client:
        assert (await _login(client, "nobody", "wrong")).status_code == 401
        assert (await _login(client, "nobody", "wrong")).status_code == 401
        assert _throttled(await _login(client, "nobody", "wrong"))


async def test_the_served_api_does_not_trust_forwarded_for_from_loopback(
    runtime: Runtime, session_dir: Path, database_url: str
) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default: every local process could
    have been a new client per attempt. Only RACKSMITH_TRUSTED_PROXIES decides."""
    port = free_port()
    settings = make_settings(
        session_dir, database_url, runtime.nats_url, port=port, token_rate_limit="3/minute"
    )
    # Not connected to the broker: its windows are its own, not those of other tests.
    served = Runtime(settings, runtime.nats_url)
    stop = asyncio.Event()
    listening = asyncio.Event()
    server = asyncio.create_task(serve_api(served, stop, listening.set))
    try:
        await asyncio.wait_for(listening.wait(), timeout=30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                assert (await _login(client, "nobody", "wrong", _address())).status_code == 401
            assert _throttled(await _login(client, "nobody", "wrong", _address()))
    finally:
        stop.set()
        await server
        await served.db.dispose()


async def test_failed_logins_never_log_what_was_typed(
    client: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    unique: str,
) -> None:
    caplog.set_level(logging.INFO)  # the default RACKSMITH_LOG_LEVEL
    typed = f"Secret-Typed-{unique}"
    # A wrong password for a real account, and a password typed into the username field.
    assert (await _login(client, ADMIN_USERNAME, typed)).status_code == 401
    assert (await _login(client, f"{typed}-as-name", "x")).status_code == 401
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert logs.count("auth.login_failed") >= 2
    assert ADMIN_USERNAME in logs  # a known account is named
    assert typed not in logs
