"""The artifact server: where BMCs download firmware images and OS images.

It listens on its own address (``RACKSMITH_ARTIFACT_HOST``/``PORT``, reached by BMCs as
``RACKSMITH_ARTIFACT_URL``), apart from the API, because BMC networks rarely reach the API and
should reach nothing else of it. It answers only ``GET``/``HEAD /a/<token>/<filename>`` for a
valid grant (``shared.artifacts.grants``) — no API token: the unguessable URL is the permission —
plus ``/healthz`` and ``/readyz`` for probes.

Responses carry ``Content-Length``, ``Content-Type``, ``Accept-Ranges: bytes``, a strong ``ETag``
(the SHA-256) and ``Last-Modified``; a single ``Range`` is answered with exactly those bytes (206),
``If-Range`` with a different validator sends the whole file. Bytes are streamed from the store:
a local file is handed to the kernel (``sendfile``), a remote object is copied through in
``READ_CHUNK`` pieces with back-pressure from the client, so memory does not grow with file size
or with slow clients. Each response adds its request and the bytes actually sent to its grant:
counted in memory and written once a second (``COUNT_FLUSH_S``), every grant served meanwhile in
one transaction — a BMC reading an image in 1 MiB ranges makes thousands of requests, and a
write per request made the database, not the network, the limit of the serving rate.
"""

from __future__ import annotations

import asyncio
import contextlib
from email.utils import format_datetime
from typing import BinaryIO

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.artifacts.ranges import ByteRange, UnsatisfiableRangeError, parse_range
from shared.artifacts import grants
from shared.artifacts.store import ArtifactStore, ObjectMissingError
from shared.core.db import Database
from shared.core.log import get_logger
from shared.observability import metrics

log = get_logger(__name__)

_NOT_FOUND = "Not found.\n"
COUNT_FLUSH_S = 1.0


class ArtifactServer:
    def __init__(self, db: Database, store: ArtifactStore) -> None:
        self.db = db
        self.store = store
        # Grant id → [requests, bytes sent] not written yet.
        self._counts: dict[int, list[int]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.on_startup.append(self._start_counting)
        app.on_cleanup.append(self._stop_counting)
        # GET routes answer HEAD too (aiohttp), without a body.
        app.router.add_get(f"{grants.PREFIX}/{{token}}/{{filename}}", self.serve)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        try:
            async with self.db.session() as session:
                await session.connection()
        except Exception as exc:
            log.warning("readiness.database_unreachable", error=str(exc))
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok"})

    async def serve(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        filename = request.match_info["filename"]
        async with self.db.session() as session:
            item = await grants.servable(session, token, filename)
        if item is None:
            metrics.artifact_downloads("not_found").inc()
            return web.Response(status=404, text=_NOT_FOUND)
        etag = f'"{item.sha256}"'
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": format_datetime(item.modified, usegmt=True),
            "Content-Type": item.content_type,
            # Every grant is its own URL; caches in between would only keep a copy of a secret.
            "Cache-Control": "private, no-store",
        }
        wanted: ByteRange | None
        if_range = request.headers.get("If-Range")
        try:
            wanted = parse_range(request.headers.get("Range"), item.size)
        except UnsatisfiableRangeError:
            metrics.artifact_downloads("failed").inc()
            await self._count(item.grant_id, 0)
            headers["Content-Range"] = f"bytes */{item.size}"
            return web.Response(status=416, headers=headers)
        if wanted is not None and if_range is not None and if_range.strip() != etag:
            wanted = None  # the client's copy is of another file: start over
        body = wanted or ByteRange(0, item.size)
        response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
        if wanted:
            response.headers["Content-Range"] = wanted.content_range(item.size)
        response.content_length = body.length
        sent = 0
        outcome = "failed"
        try:
            await response.prepare(request)
            if request.method != "HEAD" and body.length:
                sent = await self._send(request, response, item.storage_key, body)
            await response.write_eof()
            outcome = "range" if wanted else "full"
        except ObjectMissingError:
            log.error("artifact.object_missing", key=item.storage_key, grant=item.grant_id)
            raise
        finally:
            metrics.artifact_downloads(outcome).inc()
            metrics.ARTIFACT_BYTES_SERVED.inc(sent)
            await self._count(item.grant_id, sent)
        return response

    async def _send(
        self, request: web.Request, response: web.StreamResponse, key: str, body: ByteRange
    ) -> int:
        path = self.store.local_path(key)
        transport = request.transport
        if path is not None and transport is not None:
            try:
                file = path.open("rb")
            except FileNotFoundError:
                raise ObjectMissingError(key) from None
            return await _sendfile(transport, file, body)
        sent = 0
        try:
            async for chunk in self.store.open(key, body.start, body.end):
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionResetError, asyncio.CancelledError):
            log.info("artifact.client_left", sent=sent)
            raise
        return sent

    async def _count(self, grant_id: int, sent: int) -> None:
        counted = self._counts.setdefault(grant_id, [0, 0])
        counted[0] += 1
        counted[1] += sent

    async def _start_counting(self, _: web.Application) -> None:
        self._flusher = asyncio.create_task(self._flush_forever())

    async def _stop_counting(self, _: web.Application) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush_counts()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(COUNT_FLUSH_S)
            await self.flush_counts()

    async def flush_counts(self) -> None:
        """Write what was served since the last flush; kept for the next one if that fails."""
        counts, self._counts = self._counts, {}
        if not counts:
            return
        try:
            async with self.db.session() as session:
                for grant_id, (requests, sent) in counts.items():
                    await grants.count_served(session, grant_id, sent, requests)
                await session.commit()
        except Exception as exc:  # counting must not turn a served file into an error
            log.warning("artifact.count_failed", grants=len(counts), error=str(exc))
            for grant_id, (requests, sent) in counts.items():
                counted = self._counts.setdefault(grant_id, [0, 0])
                counted[0] += requests
                counted[1] += sent


async def _sendfile(transport: asyncio.BaseTransport, file: BinaryIO, body: ByteRange) -> int:
    """Let the kernel copy ``body`` of ``file`` to the socket; the bytes that left, also when
    the client goes away half-way (the file position says how far it got)."""
    loop = asyncio.get_running_loop()
    with file:
        try:
            await loop.sendfile(
                transport,  # type: ignore[arg-type]
                file,
                body.start,
                body.length,
            )
        finally:
            sent = max(0, file.tell() - body.start)
    return sent


async def start(server: ArtifactServer, host: str, port: int) -> web.AppRunner:
    """Serve on ``host:port`` until the returned runner is cleaned up."""
    runner = web.AppRunner(server.application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("artifacts.listening", host=host, port=port)
    return runner
