"""Artifacts: a streamed 1 GiB upload keeps the API's memory flat; the artifact server feeds N
concurrent Range-reading clients near the machine's loopback rate with flat memory.

    python bench/artifacts.py                        # 1 GiB, 16 clients
    python bench/artifacts.py --size-mib 256 --clients 8   # quicker

1. Upload: `racksmith api` (a subprocess, SQLite, file store in a temp dir) receives a `--size-mib`
   file as a multipart upload with its declared SHA-256. Its resident memory is read idle, then
   its peak during the upload (the kernel's high-water mark, reset just before), and the delta is
   printed next to the file size.
2. Serving: a grant is made for the uploaded file and `racksmith artifacts` (a subprocess) serves
   it to `--clients` concurrent clients, each reading the whole file in `--range-mib` Range
   requests. Baseline, in the same run, with the same clients: a plain aiohttp static-file server
   (`web.FileResponse`, kernel sendfile) serving the same file — the machine's loopback copy rate
   through an HTTP server that does nothing else. Printed: bytes/s of both, the ratio, the
   artifact server's idle and peak memory, and the bytes the grant counted.
Not a test: it prints figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web
from harness import (
    Child,
    machine_description,
    migrate_and_create_admin,
    platform_env,
    racksmith,
    run_benchmark,
    start_children,
    work_dir,
)
from sqlmodel import col, select

from shared.artifacts import grants
from shared.core.db import Database
from shared.core.settings import Settings
from shared.models import ArtifactGrant, OSImage
from shared.platform.natsserver import EmbeddedNatsServer, free_port

ADMIN = "bench-admin"
MIB = 1024 * 1024


# --- memory of a process --------------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def reset_peak(pid: int) -> None:
    """Reset the kernel's resident high-water mark (VmHWM) of ``pid`` to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_mib(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


# --- the baseline server (a child process) --------------------------------------------------------


def serve_static(port: int, path: str) -> None:
    async def file(_: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/file", file)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the work -------------------------------------------------------------------------------------


def make_file(path: Path, size: int) -> str:
    """A file of ``size`` pseudo-random bytes (incompressible), and its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(4 * MIB)
    with path.open("wb") as out:
        written = 0
        while written < size:
            # Vary each block cheaply so the file is not one block repeated.
            chunk = (written.to_bytes(8, "little") + block)[: min(len(block), size - written)]
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    return digest.hexdigest()


async def read_all(url: str, clients: int, size: int, range_size: int) -> tuple[float, int]:
    """``clients`` readers each reading the whole file in ranges; (bytes/s, bytes)."""
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            got = 0
            for start in range(0, size, range_size):
                end = min(size, start + range_size) - 1
                async with session.get(url, headers={"Range": f"bytes={start}-{end}"}) as r:
                    if r.status != 206:
                        raise RuntimeError(f"{url}: HTTP {r.status}")
                    async for chunk in r.content.iter_chunked(MIB):
                        got += len(chunk)
                if got != end + 1:
                    raise RuntimeError(f"short read: {got} of {end + 1}")
            return got

        started = time.perf_counter()
        total = sum(await asyncio.gather(*(one() for _ in range(clients))))
        return total / (time.perf_counter() - started), total


async def sample_peak(pid: int, work: asyncio.Future[tuple[float, int]]) -> float:
    reset_peak(pid)
    await work
    return peak_mib(pid)


async def run(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    size = args.size_mib * MIB
    async with contextlib.AsyncExitStack() as stack:
        tmp, _ = work_dir(stack, "racksmith-bench-artifacts-", args.keep_logs)
        database_url = f"sqlite+aiosqlite:///{tmp / 'racksmith.db'}"
        nats = EmbeddedNatsServer(tmp / "nats")
        await nats.start()
        stack.push_async_callback(nats.stop)

        source = tmp / "image.iso"
        print(f"writing a {args.size_mib} MiB file…", flush=True)
        sha256 = await asyncio.to_thread(make_file, source, size)

        api_port, artifact_port = free_port(), free_port()
        env = platform_env(
            tmp,
            database_url,
            nats.url,
            RACKSMITH_PORT=str(api_port),
            RACKSMITH_ARTIFACT_PORT=str(artifact_port),
            RACKSMITH_OS_IMAGE_MAX_BYTES=str(size),
        )
        password = await migrate_and_create_admin(env, tmp, ADMIN)
        api = Child("api", racksmith("api"), env, tmp / "api.log")
        server = Child("artifacts", racksmith("artifacts"), env, tmp / "artifacts.log")
        static_port = free_port()
        static = Child(
            "static",
            [sys.executable, __file__, "--static-server", str(static_port), str(source)],
            env,
            tmp / "static.log",
        )
        await start_children(stack, api, server, static)
        api_url = f"http://127.0.0.1:{api_port}"
        await api.wait_ready(f"{api_url}/readyz")
        await server.wait_ready(f"http://127.0.0.1:{artifact_port}/readyz")
        await static.wait_ready(f"http://127.0.0.1:{static_port}/file")
        assert api.pid is not None and server.pid is not None

        # 1. The upload.
        async with httpx.AsyncClient(base_url=api_url, timeout=httpx.Timeout(600)) as client:
            token = (
                await client.post("/api/token/", json={"username": ADMIN, "password": password})
            ).json()["access"]
            await asyncio.sleep(1)  # settle after start-up
            idle = rss_mib(api.pid)
            reset_peak(api.pid)
            started = time.perf_counter()
            with source.open("rb") as body:
                response = await client.post(
                    "/api/os/",
                    headers={"Authorization": f"Bearer {token}"},
                    files={"file": ("image.iso", body)},
                    data={
                        "name": "bench image",
                        "arch": "x86_64",
                        "os_family": "linux",
                        "sha256": sha256,
                    },
                )
            upload_s = time.perf_counter() - started
            upload_peak = peak_mib(api.pid)
        if response.status_code != 201:
            raise RuntimeError(f"upload failed: {response.status_code} {response.text}")
        image = response.json()

        # 2. Serving.
        db = Database(database_url)
        stack.push_async_callback(db.dispose)
        async with db.session() as session:
            entry = await session.get(OSImage, image["id"])
            assert entry is not None
            url = grants.grant(
                session,
                Settings(artifact_port=artifact_port),
                entry.artifact,
                "bench",
                timedelta(hours=2),
            )
            await session.commit()
        range_size = args.range_mib * MIB
        print(f"{args.clients} clients reading {args.size_mib} MiB each…", flush=True)
        baseline_rate, _ = await read_all(
            f"http://127.0.0.1:{static_port}/file", args.clients, size, range_size
        )
        serving_idle = rss_mib(server.pid)
        reading = asyncio.ensure_future(read_all(url, args.clients, size, range_size))
        serving_peak = await sample_peak(server.pid, reading)
        rate, total = reading.result()
        # A response is counted just after its last byte left: give the last ones a moment.
        deadline = time.monotonic() + 10
        while True:
            async with db.session() as session:
                counted = (
                    await session.exec(
                        select(ArtifactGrant).where(col(ArtifactGrant.purpose) == "bench")
                    )
                ).one()
            if counted.bytes_served >= total or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)

    rows = [
        ("file", f"{args.size_mib} MiB"),
        ("upload", f"{upload_s:.1f} s ({size / upload_s / MIB:.0f} MiB/s, SHA-256 checked)"),
        ("API memory idle", f"{idle:.0f} MiB"),
        ("API memory peak during upload", f"{upload_peak:.0f} MiB"),
        (
            "API memory growth",
            f"{upload_peak - idle:.0f} MiB = {(upload_peak - idle) / args.size_mib * 100:.1f}% "
            "of the file",
        ),
        ("clients x ranges", f"{args.clients} x {args.range_mib} MiB ranges"),
        ("baseline: static sendfile server", f"{baseline_rate / MIB:,.0f} MiB/s"),
        ("artifact server", f"{rate / MIB:,.0f} MiB/s"),
        ("ratio to baseline", f"{rate / baseline_rate:.2f}"),
        ("artifact server memory idle", f"{serving_idle:.0f} MiB"),
        ("artifact server memory peak", f"{serving_peak:.0f} MiB"),
        ("bytes served (grant's count)", f"{counted.bytes_served:,} of {total:,} read"),
    ]
    for name, value in [*rows, *machine_description("SQLite")]:
        print(f"  {name:36} {value}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent readers (default 16)")
    parser.add_argument("--range-mib", type=int, default=16, help="Range size (default 16)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir")
    parser.add_argument(
        "--static-server", nargs=2, metavar=("PORT", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.static_server:
        serve_static(int(args.static_server[0]), args.static_server[1])
        return 0
    return run_benchmark(run(args))


if __name__ == "__main__":
    sys.exit(main())
