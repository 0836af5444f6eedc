"""An image server for lab virtual-media tests: serves installer images and seeds with Range,
records the Range headers it was sent, and takes cloud-init ``phone_home`` POSTs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from shared.artifacts import iso
from tests.local_http import serving


def installer_image(size: int = 3 << 20) -> bytes:
    """A small ISO standing in for an installer (padded so it takes several Range reads)."""
    return iso.build("INSTALLER", {"vmlinuz": b"\0" * size, "readme": b"a lab installer\n"})


def seed_image(hostname: str, call_home: str | None, *, power_off: bool = False) -> bytes:
    user = "#cloud-config\n"
    if call_home is not None:
        user += f"phone_home:\n  url: {call_home}\n  post: all\n  tries: 3\n"
    if power_off:
        user += "power_state:\n  mode: poweroff\n"
    meta = f"instance-id: {hostname}-iid\nlocal-hostname: {hostname}\n"
    return iso.seed(meta.encode(), user.encode())


@dataclass
class ImageServer:
    base: str
    root: Path
    ranges: list[str] = field(default_factory=list)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(data)
        return f"{self.base}/files/{name}"

    def call_home_url(self, name: str) -> str:
        return f"{self.base}/home/{name}/$INSTANCE_ID"


@asynccontextmanager
async def image_server(root: Path) -> AsyncIterator[ImageServer]:
    state: list[ImageServer] = []

    async def files(request: web.Request) -> web.StreamResponse:
        state[0].ranges.append(request.headers.get("Range", ""))
        path = root / request.match_info["name"]
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    async def home(request: web.Request) -> web.Response:
        form = await request.post()
        state[0].calls.append((request.match_info["name"], {k: str(v) for k, v in form.items()}))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_get("/files/{name:.+}", files)
    app.router.add_post("/home/{name}/{instance}", home)
    async with serving(app) as base:
        server = ImageServer(base, root)
        state.append(server)
        yield server
