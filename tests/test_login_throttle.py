"""Login throttling (issue 16, finding 6): per client behind trusted proxies, per username across
addresses, shared by API replicas through NATS — and the failed-login log line keeps what was
typed to itself (finding 7)."""

from __future__ import annotations

import asyncio
import hashlib
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
from shared.core.security import Fingerprinter
from shared.messaging.streams import LOGIN_THROTTLE_BUCKET
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
    failed = [line for line in logs.splitlines() if "auth.login_failed" in line]
    assert len(failed) >= 2
    assert any("user_id=" in line for line in failed)  # a known account is named by its id
    assert not any(ADMIN_USERNAME in line for line in failed), failed
    assert typed not in logs
    # Not even as a plain hash, which hashing guesses undoes: a fingerprint keyed by the secret.
    for text in (typed, f"{typed}-as-name"):
        assert hashlib.sha256(text.encode()).hexdigest()[:16] not in logs


def test_fingerprints_are_keyed_by_the_server_secret() -> None:
    one, other = Fingerprinter("secret one"), Fingerprinter("secret two")
    assert one("alice") == one("alice") != one("bob")
    assert one("alice") != other("alice")
    assert one("alice") not in hashlib.sha256(b"alice").hexdigest()


async def test_throttle_keys_hold_no_plain_hash_of_the_username(
    api: AppFactory, runtime: Runtime, unique: str
) -> None:
    """The shared bucket (every API replica reads it) keys a username's window by its keyed
    fingerprint, not by a hash anyone can compute from a guess."""
    typed = f"typed-{unique}"
    async with api() as client:
        assert (await _login(client, typed, "wrong", _address())).status_code == 401
    assert runtime.nats is not None
    bucket = await runtime.nats.jetstream().key_value(LOGIN_THROTTLE_BUCKET)
    keys = await bucket.keys()
    plain = hashlib.sha256(typed.encode()).hexdigest()[:40]
    assert not any(plain in key for key in keys)
    assert sum(key.startswith("username.") for key in keys) >= 1
