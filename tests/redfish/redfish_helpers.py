"""Helpers for the Redfish client tests (imported by name: tests/redfish is not a package)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import pytest

from bmclab import LabConfig
from shared.redfish import RedfishError, RedfishPool, RedfishSession, TlsPolicy

# Distinctive, so that a leak into any message is unmistakable.
PASSWORD = "Zq-7!lab-Secret-Pw"
USERNAME = "root"

E = TypeVar("E", bound=RedfishError)


def lab_config(network: str, **overrides: Any) -> LabConfig:
    values: dict[str, Any] = {
        "network": network,
        "latency": "0",
        "username": USERNAME,
        "password": PASSWORD,
    }
    values.update(overrides)
    return LabConfig(**values)


def open_session(
    pool: RedfishPool,
    url: str,
    *,
    password: str = PASSWORD,
    tls: TlsPolicy | None = None,
) -> RedfishSession:
    return pool.session(url, USERNAME, password, tls or TlsPolicy())


def assert_secret_free(exc: BaseException, *secrets: str) -> None:
    """No password (nor any extra secret, e.g. a session token) in str/repr/args."""
    shown = [str(exc), repr(exc), *map(str, exc.args)]
    for secret in (PASSWORD, *secrets):
        for text in shown:
            assert secret not in text, f"secret leaked into {type(exc).__name__}: {text}"
    # Causes are suppressed so a logged traceback cannot show aiohttp's request headers.
    assert exc.__cause__ is None


async def expect(
    kind: type[E], action: Callable[[], Awaitable[object]], *secrets: str, match: str = ""
) -> E:
    """Run ``action``, require a ``kind`` error whose text contains ``match``; check no leaks."""
    with pytest.raises(kind) as info:
        await action()
    assert_secret_free(info.value, *secrets)
    assert match.lower() in str(info.value).lower(), str(info.value)
    return info.value


async def peer_fingerprint(host: str, port: int) -> str:
    """SHA-256 of the certificate a server presents, from our own TLS handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


class CountingSemaphore(asyncio.Semaphore):
    """A lab BMC's in-flight semaphore that records the peak number of requests it served."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.current = 0
        self.peak = 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.current += 1
        self.peak = max(self.peak, self.current)
        return True

    def release(self) -> None:
        self.current -= 1
        super().release()
