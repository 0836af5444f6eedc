"""Per-BMC listener and HTTP behaviour.

Each BMC gets a raw TCP listener so that socket-level faults (hang, reset, tlsfail) can be
decided per connection; healthy connections are upgraded to TLS and handed to an aiohttp
low-level server. Request-level faults are applied in `BmcHttp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from bmclab import expand, updates
from bmclab.actions import perform
from bmclab.bmc import Bmc, Session
from bmclab.faults import SOCKET_FAULTS, Fault, FaultKind
from bmclab.outcome import Outcome
from bmclab.patching import apply_patch
from bmclab.tree import JsonObject, Resource, normalise

# TLS record: alert, TLS 1.2, length 2, fatal, handshake_failure.
_TLS_HANDSHAKE_FAILURE = b"\x15\x03\x03\x00\x02\x02\x28"
_OVERSIZED_BYTES = 1 << 30
_IMAGE_LIMIT = 64 * 1024 * 1024
_CHUNK = 1 << 16
_JSON = "application/json; charset=utf-8"
_PUBLIC = frozenset({"/redfish", "/redfish/v1", "/redfish/v1/odata"})
# Lab-only endpoints (counters, faults) for tests whose lab runs in another process.
LAB_PREFIX = "/bmclab/"
_NON_REDFISH_PAGE = (
    b"<!DOCTYPE html><html><head><title>Web Image Monitor - Login</title></head>"
    b"<body><form method='post' action='/login.cgi'>User <input name='user'> Password "
    b"<input type='password' name='pass'><input type='submit' value='Login'></form>"
    b"</body></html>"
)
_NOT_FOUND_PAGE = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>"


def _reset(transport: asyncio.Transport) -> None:
    """Close with RST rather than FIN, like a BMC whose web server crashed."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def redfish_error(
    message: str,
    message_id: str = "GeneralError",
    args: tuple[str, ...] = (),
    resolution: str = "None",
) -> bytes:
    """A Redfish error body; a bare `message_id` names a message of the Base registry."""
    full_id = message_id if "." in message_id else f"Base.1.8.{message_id}"
    info: JsonObject = {
        "@odata.type": "#Message.v1_1_1.Message",
        "MessageId": full_id,
        "Message": message,
        "Severity": "Critical",
        "Resolution": resolution,
    }
    if args:
        info["MessageArgs"] = list(args)
    body = {"error": {"code": full_id, "message": message, "@Message.ExtendedInfo": [info]}}
    return json.dumps(body).encode()


class _Dropped(Exception):
    """The connection was cut on purpose (a request fault); no response goes out."""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = _JSON

    @classmethod
    def json(cls, status: int, body: JsonObject, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(body, indent=2).encode(), headers or {})

    @classmethod
    def error(cls, status: int, message: str, message_id: str = "GeneralError") -> Reply:
        return cls(status, redfish_error(message, message_id))

    @classmethod
    def outcome(cls, outcome: Outcome) -> Reply:
        if outcome.status >= 400:
            body = redfish_error(
                outcome.message, outcome.message_id, outcome.message_args, outcome.resolution
            )
            return cls(outcome.status, body, outcome.headers)
        if outcome.body is None:
            return cls(outcome.status, b"", outcome.headers)
        return cls.json(outcome.status, outcome.body, outcome.headers)

    @classmethod
    def resource(cls, resource: Resource) -> Reply:
        headers = {**resource.headers, "ETag": resource.etag}
        return cls(200, resource.raw, headers)


class BmcHttp:
    """Turns requests into replies for one BMC, then applies its request-level fault."""

    def __init__(self, bmc: Bmc) -> None:
        self.bmc = bmc

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        bmc = self.bmc
        if request.path.startswith(LAB_PREFIX):
            return self._finish(await self._lab_endpoint(request))
        try:
            fault = bmc.fault
            if bmc.flap_down or (fault is not None and fault.kind in SOCKET_FAULTS):
                # The fault arrived while this keep-alive connection was open.
                if request.transport is not None:
                    _reset(request.transport)
                return web.Response(status=503)
            try:
                await asyncio.wait_for(bmc.inflight.acquire(), bmc.behaviour.queue_timeout)
            except TimeoutError:
                return self._finish(
                    Reply.error(
                        503, "Too many requests in progress", "ServiceTemporarilyUnavailable"
                    )
                )
            try:
                delay = bmc.behaviour.latency.sample(bmc.rng)
                if fault is not None and fault.kind is FaultKind.SLOW:
                    delay += fault.arg or 0.0
                if delay > 0:
                    await asyncio.sleep(delay)
                return await self._respond(request)
            except _Dropped:
                return web.Response(status=503)
            finally:
                bmc.inflight.release()
        finally:
            bmc.requests_served += 1

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        bmc = self.bmc
        fault = bmc.fault
        kind = fault.kind if fault else None
        path = _lookup_path(bmc, request)
        if kind is FaultKind.SESSIONDROP and _is_login(bmc, request, path):
            return _drop(request)
        if kind is FaultKind.BUSY:
            reply = Reply.error(
                503, "The service is temporarily unavailable", "ServiceTemporarilyUnavailable"
            )
            reply.headers["Retry-After"] = "5"
        elif kind is FaultKind.NONREDFISH:
            page = _NON_REDFISH_PAGE if path in ("/", "/index.html") else _NOT_FOUND_PAGE
            reply = Reply(
                200 if page is _NON_REDFISH_PAGE else 404,
                page,
                {"Server": "Web-Server/3.0"},
                "text/html",
            )
        elif kind is FaultKind.REDIRECT:
            reply = Reply(
                302,
                b"",
                {"Location": f"https://login.redirect.invalid:{bmc.port}{request.path_qs}"},
            )
        elif kind is FaultKind.ERROR500 and _fails(path, bmc.sessions_path):
            reply = Reply.error(500, "Internal error", "InternalError")
        else:
            reply = await self._route(request, path)
        if kind is FaultKind.MALFORMED and reply.content_type == _JSON and reply.body:
            # Cut mid-document and add a stray brace so no JSON parser accepts it.
            reply.body = reply.body[: max(1, len(reply.body) // 2)] + b"}{"
        if kind is FaultKind.OVERSIZED and reply.status == 200:
            return await self._oversized(request, reply)
        if kind is FaultKind.DRIP:
            interval = fault.arg if fault and fault.arg else bmc.behaviour.drip_interval
            return await self._drip(request, reply, interval)
        return self._finish(reply)

    def _finish(self, reply: Reply) -> web.Response:
        headers = {"OData-Version": "4.0", **reply.headers}
        if reply.body:
            headers["Content-Type"] = reply.content_type
        return web.Response(status=reply.status, body=reply.body or None, headers=headers)

    async def _drip(
        self, request: web.BaseRequest, reply: Reply, interval: float
    ) -> web.StreamResponse:
        headers = {**reply.headers, "Content-Type": reply.content_type}
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.content_length = len(reply.body)
        await response.prepare(request)
        for i in range(len(reply.body)):
            await asyncio.sleep(interval)
            await response.write(reply.body[i : i + 1])
        await response.write_eof()
        return response

    async def _oversized(self, request: web.BaseRequest, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**reply.headers, "Content-Type": _JSON})
        response.content_length = _OVERSIZED_BYTES
        await response.prepare(request)
        head = b'{"Padding": "'
        filler = b"A" * _CHUNK
        with contextlib.suppress(ConnectionError):
            await response.write(head)
            sent = len(head)
            while sent + _CHUNK <= _OVERSIZED_BYTES:
                await response.write(filler)
                sent += _CHUNK
        return response

    # -- routing --------------------------------------------------------------------------

    async def _route(self, request: web.BaseRequest, path: str) -> Reply:
        bmc = self.bmc
        method = request.method
        sessions = normalise(bmc.sessions_path)
        if path == "/redfish" and method in ("GET", "HEAD"):
            return Reply.json(200, {"v1": "/redfish/v1/"})
        if method == "POST" and path == sessions:
            return await self._login(request)
        if path not in _PUBLIC and not bmc.authenticate(
            request.headers.get("Authorization"),
            request.headers.get("X-Auth-Token"),
            impostor=_over_impostor(bmc, request),
        ):
            reply = Reply.error(
                401, "Authentication required or credentials invalid", "NoValidSession"
            )
            reply.headers["WWW-Authenticate"] = 'Basic realm="Redfish"'
            return reply
        if method in ("GET", "HEAD"):
            reply = self._get(path, sessions)
            query = request.query.get("$expand")
            if query is None or reply.status != 200:
                return reply
            if path in _PUBLIC and not bmc.authenticate(
                request.headers.get("Authorization"), request.headers.get("X-Auth-Token")
            ):
                # An expanded service root would show what only a session may read.
                return Reply.error(401, "Authentication required to expand", "NoValidSession")
            return self._expand(reply, query)
        if method == "DELETE":
            session = bmc.session_by_path(path)
            if session is None:
                exists = path in bmc.store
                return Reply.error(405 if exists else 404, "Cannot delete this resource")
            bmc.delete_session(session)
            return Reply(204)
        if method == "PATCH":
            return await self._patch(request, path)
        if method == "POST":
            return await self._post(request, path)
        return Reply.error(405, f"{method} is not allowed here", "OperationNotAllowed")

    def _get(self, path: str, sessions: str) -> Reply:
        bmc = self.bmc
        if path == sessions:
            live = list(bmc.live_sessions().values())
            return Reply.json(
                200,
                {
                    "@odata.id": bmc.sessions_path,
                    "@odata.type": "#SessionCollection.SessionCollection",
                    "Name": "Session Collection",
                    "Members": [{"@odata.id": s.path} for s in live],
                    "Members@odata.count": len(live),
                },
            )
        session = bmc.session_by_path(path)
        if session is not None:
            return Reply.json(200, _session_body(session))
        resource = bmc.store.get(path)
        if resource is None:
            return Reply.error(404, f"{path} not found", "ResourceMissingAtURI")
        return Reply.resource(resource)

    def _expand(self, reply: Reply, query: str) -> Reply:
        root = self.bmc.store.get("/redfish/v1")
        try:
            expansion = expand.parse(query, root.body if root is not None else {})
        except expand.Unsupported as exc:
            return Reply.error(501, str(exc), "QueryNotSupported")
        sessions = normalise(self.bmc.sessions_path)

        def lookup(path: str) -> JsonObject | None:
            resource = self.bmc.store.get(path)
            if resource is not None:
                return resource.body
            found = self._get(normalise(path), sessions)
            return json.loads(found.body) if found.status == 200 else None

        return Reply.json(200, expand.expand(json.loads(reply.body), expansion, lookup))

    async def _login(self, request: web.BaseRequest) -> Reply:
        bmc = self.bmc
        payload = await _json_body(request)
        if payload is None:
            return Reply.error(400, "Body must be a JSON object", "MalformedJSON")
        user, password = payload.get("UserName"), payload.get("Password")
        if not isinstance(user, str) or not isinstance(password, str):
            return Reply.error(400, "UserName and Password are required", "PropertyMissing")
        bmc.offered(user, password, impostor=_over_impostor(bmc, request))
        if not bmc.credentials_valid(user, password):
            bmc.failed_logins += 1
            return Reply.error(401, "Invalid username or password", "NoValidSession")
        session = bmc.create_session(user)
        if session is None:
            return Reply.error(503, "Maximum number of sessions reached", "SessionLimitExceeded")
        return Reply.json(
            201, _session_body(session), {"X-Auth-Token": session.token, "Location": session.path}
        )

    async def _patch(self, request: web.BaseRequest, path: str) -> Reply:
        bmc = self.bmc
        resource = bmc.store.get(path)
        if resource is None:
            return Reply.error(404, f"{path} not found", "ResourceMissingAtURI")
        bmc.counters.patches[path] += 1
        fault = bmc.request_fault("PATCH", None, None)
        self._drop_if(request, fault, FaultKind.DROP_BEFORE_APPLY)
        problem = apply_patch(
            bmc, resource, request.headers.get("If-Match"), await _json_body(request)
        )
        if problem is not None:
            return Reply.outcome(problem)
        bmc.counters.patches_applied[path] += 1
        await self._after_apply(request, fault)
        return Reply.resource(resource)

    async def _post(self, request: web.BaseRequest, path: str) -> Reply:
        bmc = self.bmc
        ref = bmc.store.action(path)
        if ref is not None:
            payload = await _json_body(request, allow_empty=True)
            reset_type = payload.get("ResetType") if payload else None
            reset_type = reset_type if isinstance(reset_type, str) else None
            action = ref.name.lstrip("#")
            bmc.counters.post(path, action, reset_type)
            fault = bmc.request_fault("POST", action, reset_type)
            self._drop_if(request, fault, FaultKind.DROP_BEFORE_APPLY)
            if payload is None:
                return Reply.error(400, "Body must be a JSON object", "MalformedJSON")
            outcome = await perform(bmc, ref, payload)
            if outcome.status < 300:
                await self._after_apply(request, fault)
            return Reply.outcome(outcome)
        if path in _push_uris(bmc):
            bmc.counters.post(path, "UpdateService.HttpPush", None)
            fault = bmc.request_fault("POST", "UpdateService.HttpPush", None)
            self._drop_if(request, fault, FaultKind.DROP_BEFORE_APPLY)
            image, data, targets = await _receive_image(request)
            outcome = updates.push(bmc, image, data, targets)
            if outcome.status < 300:
                await self._after_apply(request, fault)
            return Reply.outcome(outcome)
        bmc.counters.post(path, None, None)
        if path in bmc.store:
            return Reply.error(405, "POST is not allowed here", "OperationNotAllowed")
        return Reply.error(404, f"{path} not found", "ResourceMissingAtURI")

    def _drop_if(self, request: web.BaseRequest, fault: Fault | None, kind: FaultKind) -> None:
        """Cut the connection (RST) when `fault` is of `kind`: the client gets no response."""
        if fault is None or fault.kind is not kind:
            return
        self.bmc.clear_fault()
        self.bmc.counters.dropped += 1
        if request.transport is not None:
            _reset(request.transport)
        raise _Dropped

    async def _after_apply(self, request: web.BaseRequest, fault: Fault | None) -> None:
        """A change was made; a request fault may now withhold the answer."""
        self._drop_if(request, fault, FaultKind.DROP_AFTER_APPLY)
        if fault is not None and fault.kind is FaultKind.HANG_AFTER_APPLY:
            self.bmc.clear_fault()
            self.bmc.counters.dropped += 1
            # Held until the client gives up: aiohttp cancels the handler on disconnect.
            await asyncio.Event().wait()

    async def _lab_endpoint(self, request: web.BaseRequest) -> Reply:
        """``/bmclab/counters`` (GET, DELETE clears) and ``/bmclab/fault`` (GET, PUT)."""
        bmc = self.bmc
        name = normalise(request.path)[len(LAB_PREFIX) :]
        if name == "counters" and request.method == "GET":
            return Reply.json(200, bmc.counts())
        if name == "counters" and request.method == "DELETE":
            bmc.counters.clear()
            return Reply(204)
        if name == "fault" and request.method == "GET":
            fault = bmc.configured_fault
            return Reply.json(200, {"fault": str(fault) if fault else None})
        if name == "fault" and request.method == "PUT":
            payload = await _json_body(request)
            spec = payload.get("fault") if payload else None
            if payload is None or not (spec is None or isinstance(spec, str)):
                return Reply.error(400, 'Send {"fault": "KIND[:ARG]"} or {"fault": null}')
            try:
                bmc.set_fault(spec or None)
            except ValueError as exc:
                return Reply.error(400, str(exc))
            return Reply.json(200, {"fault": spec or None})
        return Reply.error(404, f"{request.path} not found", "ResourceMissingAtURI")


def _over_impostor(bmc: Bmc, request: web.BaseRequest) -> bool:
    """Whether this request came over a connection that presented the impostor's certificate."""
    transport = request.transport
    context = transport.get_extra_info("sslcontext") if transport is not None else None
    return context is not None and context is bmc.impostor_context


def _lookup_path(bmc: Bmc, request: web.BaseRequest) -> str:
    """Mockup directories are named after the URI as sent on the wire (e.g. ``%20``), so
    the undecoded path is tried first, then the decoded one."""
    raw = normalise(request.raw_path)
    if raw in bmc.store:
        return raw
    decoded = normalise(request.path)
    return decoded if decoded in bmc.store else raw


def _is_login(bmc: Bmc, request: web.BaseRequest, path: str) -> bool:
    return request.method == "POST" and path == normalise(bmc.sessions_path)


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    """A `sessiondrop` BMC's answer to a login: the connection closes without a response, as a
    BMC emulator written by others does (HTTP Basic still works there)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)


def _fails(path: str, sessions_path: str) -> bool:
    """Resources an `error500` BMC breaks: a stable third of them, never the entry points."""
    if (
        path in _PUBLIC
        or path.startswith(normalise(sessions_path))
        or path == "/redfish/v1/Systems"
    ):
        return False
    return zlib.crc32(path.encode()) % 3 == 0


def _session_body(session: Session) -> JsonObject:
    return {
        "@odata.id": session.path,
        "@odata.type": "#Session.v1_3_0.Session",
        "Id": session.id,
        "Name": "User Session",
        "UserName": session.username,
    }


async def _json_body(request: web.BaseRequest, *, allow_empty: bool = False) -> JsonObject | None:
    raw = await request.read()
    if not raw.strip() and allow_empty:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _push_uris(bmc: Bmc) -> set[str]:
    service = bmc.store.get("/redfish/v1/UpdateService")
    if service is None:
        return set()
    return {
        normalise(str(service.body[k]))
        for k in ("MultipartHttpPushUri", "HttpPushUri")
        if isinstance(service.body.get(k), str)
    }


async def _receive_image(request: web.BaseRequest) -> tuple[str, bytes, list[Any]]:
    """Read an uploaded image: its file name, bytes and update targets. The lab's images are
    small (``racksmith lab firmware-image``); larger uploads are read and cut at a limit."""
    image, data, targets = "upload.bin", bytearray(), list[Any]()
    if not request.content_type.startswith("multipart/"):
        while chunk := await request.content.readany():
            if len(data) < _IMAGE_LIMIT:
                data += chunk
        return image, bytes(data), targets
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "UpdateParameters":
            with contextlib.suppress(ValueError):
                params = json.loads(await part.read())
                if isinstance(params, dict) and isinstance(params.get("Targets"), list):
                    targets = params["Targets"]
        else:
            image = part.filename or image
            while chunk := await part.read_chunk(_CHUNK):
                if len(data) < _IMAGE_LIMIT:
                    data += chunk
    return image, bytes(data), targets


class _Dispatch(asyncio.Protocol):
    """Decides a connection's fate before TLS, then hands healthy ones to aiohttp."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.mode = "hang"
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        fault = self.listener.bmc.fault
        kind = fault.kind if fault else None
        if kind is FaultKind.RESET:
            _reset(transport)
            return
        self.listener.raw.add(transport)
        if kind is FaultKind.HANG:
            self.mode = "hang"
        elif kind is FaultKind.TLSFAIL:
            self.mode = "tlsfail"
        else:
            self.mode = "upgrading"
            # Reading stays paused until start_tls owns the transport, so no byte of the
            # ClientHello can land here.
            transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._upgrade(transport))
            self.listener.bmc.background.add(task)
            task.add_done_callback(self.listener.bmc.background.discard)

    def data_received(self, data: bytes) -> None:
        if self.mode == "tlsfail" and self.transport is not None:
            self.transport.write(_TLS_HANDSHAKE_FAILURE)
            self.transport.close()
        elif self.mode == "upgrading":
            # Application data decrypted before aiohttp took over.
            self.early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.listener.raw.discard(self.transport)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                self,
                self.listener.ssl_context,
                server_side=True,
                ssl_handshake_timeout=15.0,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            transport.abort()
            return
        finally:
            self.listener.raw.discard(transport)
        if tls is None:
            return
        self.mode = "handed-over"
        protocol = self.listener.http()
        tls.set_protocol(protocol)
        protocol.connection_made(tls)
        for chunk in self.early:
            protocol.data_received(chunk)
        self.early.clear()


class Listener:
    """The listening socket of one BMC; can be closed and reopened (flap)."""

    def __init__(self, bmc: Bmc, ssl_context: ssl.SSLContext) -> None:
        self.bmc = bmc
        self.ssl_context = ssl_context
        self.raw: set[asyncio.Transport] = set()
        self.http = web.Server(BmcHttp(bmc).handle, handler_cancellation=True, access_log=None)
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Dispatch(self),
            self.bmc.address,
            self.bmc.port,
            reuse_address=True,
            backlog=128,
        )

    async def close(self) -> None:
        """Stop listening and drop every open connection, as a BMC that vanished would."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self.raw):
            transport.abort()
        self.raw.clear()
        for handler in self.http.connections:
            handler.force_close()
            if handler.transport is not None:
                handler.transport.abort()
        if server is not None:
            await server.wait_closed()

    async def stop(self) -> None:
        await self.close()
        await self.http.shutdown(0.1)
