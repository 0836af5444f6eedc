"""Deployments against the lab: the artifact server BMCs fetch from, a loopback door to the
in-process API for the installers' call-home, and an uploaded installer image."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web

from bmclab import LabConfig
from services.artifacts.server import ArtifactServer, start
from shared.artifacts import iso
from shared.platform.natsserver import free_port
from shared.platform.runtime import Runtime
from tests.artifacts.helpers import upload
from tests.lab_net import LAB_NET
from tests.local_http import serving


def install_lab_config(
    count: int,
    subnet: int,
    *,
    power_delay: float = 0.2,
    power_on_holdoff: float = 0.4,
    install_time: float = 1.0,
) -> LabConfig:
    """A lab on ``LAB_NET.subnet.0/24`` with no network latency, whose BMCs power on and whose
    installers finish fast enough for a test to watch deployments run through."""
    return LabConfig(
        count=count,
        network=f"{LAB_NET}.{subnet}.0/24",
        latency="0",
        power_delay=power_delay,
        power_on_holdoff=power_on_holdoff,
        install_time=install_time,
    )


def installer_iso(size: int = 2 << 20) -> bytes:
    """A small generated installer ISO (padded so the BMC reads it in several Range requests)."""
    return iso.build("INSTALLER", {"vmlinuz": b"\0" * size, "readme": b"a test installer\n"})


@dataclass(frozen=True)
class DeployWorld:
    artifact_url: str
    call_home_url: str
    image_id: int
    image_filename: str
    image_size: int

    def settings(self) -> dict[str, Any]:
        return {"artifact_url": self.artifact_url, "call_home_url": self.call_home_url}


@asynccontextmanager
async def deploy_world(
    runtime: Runtime, client: httpx.AsyncClient, headers: dict[str, str], filename: str
) -> AsyncIterator[DeployWorld]:
    """The artifact server and the call-home door on loopback, and an uploaded image."""
    port = free_port()
    runner = await start(ArtifactServer(runtime.db, runtime.artifacts), "127.0.0.1", port)

    async def call_home(request: web.Request) -> web.Response:
        # The API runs in this process on an ASGI transport; installers need a socket.
        forwarded = await client.post(
            request.path,
            content=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        )
        return web.Response(status=forwarded.status_code, body=forwarded.content)

    door = web.Application()
    door.router.add_post("/api/deployment/call_home/{token}/", call_home)
    image = installer_iso()
    try:
        async with serving(door) as door_url:
            created = await upload(
                client,
                headers,
                "/api/os/",
                image,
                filename,
                name="Test Linux",
                version="1.0",
                arch="x86_64",
                os_family="linux",
            )
            assert created.status_code == 201, created.text
            yield DeployWorld(
                f"http://127.0.0.1:{port}", door_url, created.json()["id"], filename, len(image)
            )
    finally:
        await runner.cleanup()
