"""The artifact server as BMCs use it: grant URLs, exact single ranges, HEAD, validators,
refusals, counting — from the filesystem store and from a real S3-compatible server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from services.api.app import create_app
from services.artifacts.ranges import ByteRange, UnsatisfiableRangeError, parse_range
from services.artifacts.server import ArtifactServer, start
from shared.artifacts import grants
from shared.core.settings import Settings
from shared.models import ArtifactGrant, FirmwareBinary, OSImage
from shared.platform.natsserver import free_port
from shared.platform.runtime import Runtime
from tests.artifacts.helpers import sha256, upload
from tests.artifacts.s3server import S3Server, s3_server

pytestmark = [pytest.mark.broker]

IMAGE = os.urandom(2 * 1024 * 1024 + 777)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


async def serving(runtime: Runtime) -> tuple[web.AppRunner, Settings]:
    port = free_port()
    runner = await start(ArtifactServer(runtime.db, runtime.artifacts), "127.0.0.1", port)
    return runner, runtime.settings.model_copy(update={"artifact_port": port})


async def grant_for(
    runtime: Runtime, settings: Settings, image_id: int, ttl: timedelta = timedelta(hours=1)
) -> str:
    async with runtime.db.session() as session:
        image = await session.get(OSImage, image_id)
        assert image is not None
        url = grants.grant(session, settings, image.artifact, f"deployment {image_id}", ttl)
        await session.commit()
    return url


async def grant_row(runtime: Runtime, url: str) -> ArtifactGrant:
    token = url.split("/")[-2]
    async with runtime.db.session() as session:
        from sqlmodel import col, select

        row = (
            await session.exec(select(ArtifactGrant).where(col(ArtifactGrant.token) == token))
        ).one()
        return row


async def add_image(
    client: httpx.AsyncClient, headers: dict[str, str], name: str
) -> dict[str, Any]:
    response = await upload(
        client,
        headers,
        "/api/os/",
        IMAGE,
        f"{name}.iso",
        name=name,
        arch="x86_64",
        os_family="linux",
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def check_serving(
    runtime: Runtime, client: httpx.AsyncClient, headers: dict[str, str], name: str
) -> None:
    image = await add_image(client, headers, name)
    runner, settings = await serving(runtime)
    try:
        url = await grant_for(runtime, settings, image["id"])
        assert url.startswith(settings.effective_artifact_url + "/a/")
        assert url.endswith(f"/{name}.iso") and "?" not in url and "=" not in url
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as full:
                assert full.status == 200
                assert await full.read() == IMAGE
                assert full.headers["Content-Length"] == str(len(IMAGE))
                assert full.headers["Accept-Ranges"] == "bytes"
                assert full.headers["ETag"] == f'"{sha256(IMAGE)}"'
                assert full.headers["Content-Type"] == "application/x-iso9660-image"
                assert "Last-Modified" in full.headers
            async with http.head(url) as head:
                assert head.status == 200
                assert head.headers["Content-Length"] == str(len(IMAGE))
                assert await head.read() == b""
            cases = {
                "bytes=0-0": (0, 1),
                "bytes=100-199": (100, 200),
                "bytes=1048570-1048590": (1048570, 1048591),
                f"bytes={len(IMAGE) - 5}-": (len(IMAGE) - 5, len(IMAGE)),
                "bytes=-10": (len(IMAGE) - 10, len(IMAGE)),
                f"bytes=2000-{len(IMAGE) * 2}": (2000, len(IMAGE)),
            }
            for header, (begin, end) in cases.items():
                async with http.get(url, headers={"Range": header}) as part:
                    assert part.status == 206, header
                    assert await part.read() == IMAGE[begin:end], header
                    assert part.headers["Content-Range"] == f"bytes {begin}-{end - 1}/{len(IMAGE)}"
                    assert part.headers["Content-Length"] == str(end - begin)
            async with http.get(url, headers={"Range": f"bytes={len(IMAGE)}-"}) as past:
                assert past.status == 416
                assert past.headers["Content-Range"] == f"bytes */{len(IMAGE)}"
            for header in (
                {"Range": "bytes=0-9,20-29"},
                {"Range": "bytes=0-9", "If-Range": '"other"'},
            ):
                async with http.get(url, headers=header) as whole:
                    assert whole.status == 200 and len(await whole.read()) == len(IMAGE)
            async with http.get(
                url, headers={"Range": "bytes=5-9", "If-Range": f'"{sha256(IMAGE)}"'}
            ) as same:
                assert same.status == 206 and await same.read() == IMAGE[5:10]

            # Many BMCs reading ranges at once each get exactly their bytes.
            step = len(IMAGE) // 16 + 1

            async def piece(index: int) -> bytes:
                header = f"bytes={index * step}-{min(len(IMAGE), (index + 1) * step) - 1}"
                async with http.get(url, headers={"Range": header}) as response:
                    assert response.status == 206
                    return await response.read()

            assert b"".join(await asyncio.gather(*(piece(i) for i in range(16)))) == IMAGE

            base, token, filename = url.rsplit("/", 2)
            for wrong in (f"{base}/{token}/other.iso", f"{base}/{'x' * len(token)}/{filename}"):
                async with http.get(wrong) as missing:
                    assert missing.status == 404
            # Each response is counted once it has been sent: wait for the last ones to land.
            requests = 1 + 1 + len(cases) + 1 + 2 + 1 + 16
            served = (
                len(IMAGE)  # GET
                + sum(end - begin for begin, end in cases.values())
                + 2 * len(IMAGE)  # ranges answered with the whole file
                + 5  # If-Range matched
                + len(IMAGE)  # the 16 pieces
            )
            async with asyncio.timeout(10):
                while (counted := await grant_row(runtime, url)).requests < requests:
                    await asyncio.sleep(0.05)
            assert (counted.requests, counted.bytes_served) == (requests, served)

            async with runtime.db.session() as session:
                assert await grants.revoke(session, token)
                await session.commit()
            async with http.get(url) as revoked:
                assert revoked.status == 404
            expired = await grant_for(runtime, settings, image["id"], timedelta(seconds=-1))
            async with http.get(expired) as gone:
                assert gone.status == 404
    finally:
        await runner.cleanup()


async def test_serving_from_the_file_store(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    await check_serving(runtime, client, admin_headers, f"file-{unique}")


@pytest.fixture(scope="module")
async def s3_runtime(settings: Settings, s3: S3Server) -> AsyncIterator[Runtime]:
    rt = Runtime(settings.model_copy(update=s3.settings()), settings.nats_url or "")
    await rt.connect()
    yield rt
    await rt.close()


async def test_serving_from_s3(
    s3_runtime: Runtime, s3: S3Server, admin_headers: dict[str, str], unique: str
) -> None:
    """Uploads stream into the S3 server, BMCs are served from it, deletes remove it there."""
    transport = httpx.ASGITransport(app=create_app(s3_runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        before = set(s3.keys())
        await check_serving(s3_runtime, client, admin_headers, f"s3-{unique}")
        (key,) = set(s3.keys()) - before
        listed = await client.get(f"/api/os/?search=s3-{unique}", headers=admin_headers)
        (image,) = listed.json()["results"]
        assert image["sha256"] == sha256(IMAGE)
        assert (
            await client.delete(f"/api/os/{image['id']}/", headers=admin_headers)
        ).status_code == 204
        assert key not in list(s3.keys()) and not s3.pending_uploads()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 100)),
        ("bytes=90-", ByteRange(90, 100)),
        ("bytes=-30", ByteRange(70, 100)),
        ("bytes=-300", ByteRange(0, 100)),
        ("bytes=50-500", ByteRange(50, 100)),
        ("bytes=5-1", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
    ],
)
def test_range_parsing(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=200-300"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(UnsatisfiableRangeError):
        parse_range(header, 100)


async def test_only_ready_artifacts_are_granted(runtime: Runtime) -> None:
    from shared.models import Artifact, ArtifactKind, ArtifactStatus

    async with runtime.db.session() as session:
        pending = Artifact(
            kind=ArtifactKind.firmware, filename="x.bin", status=ArtifactStatus.uploading
        )
        with pytest.raises(grants.NotReadyError):
            grants.grant(session, runtime.settings, pending, "job 1", timedelta(hours=1))
    _ = FirmwareBinary
