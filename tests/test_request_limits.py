"""Request size limits (issue 16, finding 5): bounded strings in every request model, and bodies
cut off at the cap as they stream in — four concurrent 60 MB passwords once took the API from
154 MB to 1.1 GB."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request

from services.api.app import create_app
from services.api.bodylimit import body_limit
from shared.core.settings import Settings
from shared.platform.natsserver import free_port
from shared.platform.runtime import Runtime
from tests.conftest import worker_env
from tests.processes import RACKSMITH, STARTUP_TIMEOUT_S

MIB = 1024 * 1024
BIG = 60 * MIB
CHUNK = 256 * 1024


def _strings_without_max_length(schema: dict[str, Any], where: str) -> Iterator[str]:
    bounded = {"maxLength", "enum", "const"} & set(schema)
    # Uploaded files (`format: binary`) are bounded by their kind's size cap instead.
    unbounded_formats = {"date-time", "binary"}
    if (
        schema.get("type") == "string"
        and not bounded
        and schema.get("format") not in unbounded_formats
    ):
        yield where
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(schema.get(key, [])):
            yield from _strings_without_max_length(option, f"{where}[{key}{i}]")
    if "items" in schema:
        yield from _strings_without_max_length(schema["items"], f"{where}[]")
    for name, prop in schema.get("properties", {}).items():
        yield from _strings_without_max_length(prop, f"{where}.{name}")


def test_every_string_a_client_can_send_is_bounded(runtime: Runtime) -> None:
    document = create_app(runtime).openapi()
    components = document["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        return components[ref.rsplit("/", 1)[1]] if ref else schema

    unbounded: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                body = resolve(media["schema"])
                # Nested models are references too.
                expanded = json.loads(
                    json.dumps(body),
                    object_hook=lambda d: resolve(d) if "$ref" in d else d,
                )
                unbounded += _strings_without_max_length(expanded, f"{method.upper()} {path}")
    assert unbounded == []


async def test_oversized_password_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/token/", json={"username": "admin", "password": "p" * 5000})
    assert response.status_code == 400
    assert list(response.json()) == ["password"]


async def test_declared_large_body_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    body = json.dumps({"username": "admin", "password": "p" * (2 * MIB)})
    response = await client.post(
        "/api/token/", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body is larger than {MIB} bytes."}


async def test_chunked_body_without_length_is_cut_off_at_the_cap(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"username": "admin", "password": "'
        for _ in range(BIG // CHUNK):
            sent += CHUNK
            yield b"p" * CHUNK
        yield b'"}'

    response = await client.post(
        "/api/token/", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"].startswith("Request body is larger than")
    assert sent < 2 * MIB  # the API stopped reading at the cap


async def test_a_route_can_set_its_own_cap(runtime: Runtime) -> None:
    """Upload routes (firmware, OS images) stream and declare their own cap."""
    app = create_app(runtime)

    @app.post("/upload-test/")
    @body_limit(8 * MIB)
    async def upload(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @app.post("/uncapped-test/")
    @body_limit(None)
    async def uncapped(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.post("/upload-test/", content=b"x" * (3 * MIB))).json() == {"size": 3 * MIB}
        over = await c.post("/upload-test/", content=b"x" * (9 * MIB))
        assert over.status_code == 413
        assert over.json() == {"detail": f"Request body is larger than {8 * MIB} bytes."}
        assert (await c.post("/uncapped-test/", content=b"x" * (3 * MIB))).status_code == 200
        # Everything else keeps the default.
        assert (await c.post("/api/token/", content=b"x" * (3 * MIB))).status_code == 413


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _send_big_password(port: int, *, chunked: bool) -> tuple[bytes, int]:
    """POST a 60 MB password as an attacker would; returns the status line and how many body
    bytes went out before the answer came.

    With a declared length nothing but the headers is sent: the API must answer without waiting
    for the body (or this times out). Chunked, the body streams until the API answers.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = (
        b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {BIG}\r\n".encode()
    )
    writer.write(
        b"POST /api/token/ HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        + framing
        + b"\r\n"
    )
    sent = 0
    answer = asyncio.ensure_future(reader.readline())
    try:
        while chunked and sent < BIG and not answer.done():
            data = b"p" * CHUNK
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            try:
                await asyncio.wait_for(writer.drain(), timeout=5)
            except (ConnectionError, TimeoutError):
                break  # the server stopped reading: it has answered
            sent += len(data)
        status = await asyncio.wait_for(answer, timeout=30)
    finally:
        writer.close()
    return status, sent


@pytest.fixture
def api_process(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``racksmith api`` on the suite's broker and database: a process whose memory is its own."""
    port = free_port()
    assert settings.secret_key is not None
    env = worker_env(settings) | {
        "RACKSMITH_PORT": str(port),
        "RACKSMITH_STATE_DIR": str(tmp_path / "state"),
        "RACKSMITH_SECRET_KEY": settings.secret_key.get_secret_value(),
    }
    process = subprocess.Popen(
        [RACKSMITH, "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "api did not start"
            time.sleep(0.1)
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_concurrent_huge_bodies_are_refused_without_the_memory_they_would_take(
    api_process: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = api_process
    # Warm up the code paths the attack takes, so what follows measures the bodies only.
    for chunked in (False, True):
        await _send_big_password(port, chunked=chunked)
    before = _rss_bytes(process.pid)
    results = await asyncio.gather(
        *(_send_big_password(port, chunked=i % 2 == 1) for i in range(4)),
    )
    for status, sent in results:
        assert status.startswith(b"HTTP/1.1 413"), status
        assert sent < BIG  # answered long before the body ended
    # Four 60 MB bodies held in memory would add 240 MB; what is left is allocator noise.
    assert _rss_bytes(process.pid) - before < 32 * MIB
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
