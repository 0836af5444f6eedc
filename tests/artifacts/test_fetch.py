"""Adding by ``source_url``: the fetcher worker downloads, checks and stores the file, or marks
the entry ``invalid`` with a reason; source URLs pass the outbound-URL policy."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from shared.core.settings import Settings
from shared.platform.natsserver import free_port
from shared.platform.runtime import Runtime
from tests.artifacts.helpers import sha256
from tests.discovery_helpers import events, scanner

pytestmark = [pytest.mark.broker]

PAYLOAD = os.urandom(1024 * 1024 + 99)


@pytest.fixture(scope="module")
async def source() -> AsyncIterator[str]:
    """A download server: the file, a redirect to it, one to a forbidden address, a 404, a
    server that always fails."""
    failures = {"count": 0}

    async def file(_: web.Request) -> web.Response:
        return web.Response(body=PAYLOAD)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/downloads/bios.bin")

    async def metadata(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def broken(_: web.Request) -> web.Response:
        failures["count"] += 1
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/downloads/bios.bin", file)
    app.router.add_get("/mirror", redirect)
    app.router.add_get("/sneaky", metadata)
    app.router.add_get("/broken/image.iso", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(scope="module")
async def fetcher(settings: Settings) -> AsyncIterator[Runtime]:
    allowed = settings.model_copy(update={"artifact_source_allowed_networks": "127.0.0.0/8"})
    async with scanner(allowed, ("fetcher",)) as runtime:
        yield runtime


@pytest.fixture
def loopback_sources(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.settings, "artifact_source_allowed_networks", "127.0.0.0/8")


async def settled(client: httpx.AsyncClient, headers: dict[str, str], path: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            body: dict[str, Any] = (await client.get(path, headers=headers)).json()
            if body["status"] in ("ready", "invalid"):
                return body
            await asyncio.sleep(0.1)


def firmware(url: str, digest: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "fetched BIOS",
        "firmware_type": "BIOS",
        "version": "1.2.3",
        "source_url": url,
        "sha256": digest,
    } | extra


@pytest.mark.usefixtures("loopback_sources", "fetcher")
async def test_a_source_url_is_downloaded_checked_and_stored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, source: str
) -> None:
    response = await client.post(
        "/api/firmware/", json=firmware(f"{source}/mirror", sha256(PAYLOAD)), headers=admin_headers
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "uploading"
    assert accepted["source_url"] == f"{source}/mirror"
    assert accepted["filename"] == "mirror"
    done = await settled(client, admin_headers, f"/api/firmware/{accepted['id']}/")
    assert done["status"] == "ready", done
    assert (done["sha256"], done["size"]) == (sha256(PAYLOAD), len(PAYLOAD))
    fired = await events(runtime, f"racksmith.evt.firmware.{accepted['id']}.>")
    assert [e["type"].rsplit(".", 1)[1] for e in fired] == ["added", "ready"]
    assert fired[0]["data"]["status"] == "uploading"


@pytest.mark.parametrize(
    ("path", "digest", "reason"),
    [
        ("/downloads/bios.bin", "ab" * 32, "SHA-256"),
        ("/nothing-here.bin", None, "HTTP 404"),
        ("/sneaky", None, "169.254.169.254"),
        ("/broken/image.iso", None, "HTTP 503"),
    ],
)
@pytest.mark.usefixtures("loopback_sources", "fetcher")
async def test_failed_downloads_are_invalid_with_a_reason(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    source: str,
    path: str,
    digest: str | None,
    reason: str,
) -> None:
    body = firmware(f"{source}{path}", digest or sha256(PAYLOAD), filename="named.bin")
    response = await client.post(
        "/api/os/", json=body | {"arch": "x86_64", "os_family": "linux"}, headers=admin_headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["filename"] == "named.bin"
    done = await settled(client, admin_headers, f"/api/os/{response.json()['id']}/")
    assert done["status"] == "invalid"
    assert reason in done["status_reason"]
    fired = await events(runtime, f"racksmith.evt.os_image.{done['id']}.>")
    assert fired[-1]["type"] == "io.racksmith.os_image.invalid"


async def test_source_urls_must_pass_the_policy(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """By default only globally routable addresses may be sources: nothing on the platform's
    own host, link-local, private or a cloud metadata service (the webhooks' rule)."""
    for url, message in (
        ("http://127.0.0.1:9/bios.bin", "RACKSMITH_ARTIFACT_SOURCE_ALLOWED_NETWORKS"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://10.20.30.40/bios.bin", "not globally routable"),
        ("http://100.100.100.200/latest", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest", "cloud metadata"),
        ("ftp://example.com/bios.bin", "Only http and https"),
        ("http://user:secret@example.com/bios.bin", "Credentials"),
    ):
        response = await client.post(
            "/api/firmware/", json=firmware(url, "ab" * 32), headers=admin_headers
        )
        assert response.status_code == 400, url
        assert message in response.json()["source_url"][0]
    missing = await client.post(
        "/api/firmware/",
        json={"name": "x", "source_url": "http://example.com/x"},
        headers=admin_headers,
    )
    assert missing.status_code == 400
    assert {"firmware_type", "version", "sha256"} <= set(missing.json())
