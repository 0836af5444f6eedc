"""The Redfish client: one pool per process, one `RedfishSession` per BMC conversation.

Why it is shaped like this:

* BMCs have few sessions (iDRAC: ~8, 503 when used up; leaked ones live 30 minutes), so a
  session logs in once, reuses the token for every request and always logs out.
* Creating a session can fail on BMCs that serve Redfish perfectly well otherwise (no
  SessionService, 405/501, a 5xx, an emulator that drops the connection on the POST). Any such
  failure other than refused credentials falls back to HTTP Basic, which every Redfish service
  must accept, as the sushy library does; the pool remembers it per BMC, so later conversations
  skip the failing POST.
* BMCs fall over under parallel load, so requests are capped per BMC (``per_bmc``) and across
  the process (``total``). A request waits for its BMC's slot before taking a global one, so
  a slow BMC never holds global slots while queueing.
* BMCs are untrusted input: bodies are size-capped, redirects and links that leave the BMC are
  refused, and error messages are built from values we control (never from request bodies or
  headers) so credentials cannot leak into logs.
* No retries here: the registrar, the inventory worker and the job engine decide what a failure
  means. A change request (POST, PATCH) whose answer is lost raises `ResponseLost` — the BMC may
  have acted on it — so the caller can look before it asks again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.tracing import Trace
from multidict import CIMultiDictProxy
from prometheus_client import Gauge
from yarl import URL

from shared.core.log import get_logger
from shared.observability.metrics import vendor_label
from shared.redfish import telemetry
from shared.redfish.errors import (
    AuthenticationFailed,
    BmcBusy,
    BmcUnreachable,
    CertificateMismatch,
    ProtocolError,
    RedfishError,
    RequestRefused,
    ResourceNotFound,
    ResponseLost,
    message_id,
)
from shared.redfish.resources import ServiceRoot
from shared.redfish.tls import SslArgument, TlsPolicy, certificate_fingerprint
from shared.redfish.updates import task_reference

log = get_logger(__name__)

ROOT_PATH = "/redfish/v1/"
DEFAULT_SESSIONS_PATH = "/redfish/v1/SessionService/Sessions"
DEFAULT_SYSTEMS_PATH = "/redfish/v1/Systems"
MAX_REDIRECTS = 3
# A collection paged further than this is a BMC bug, not a real inventory.
MAX_PAGES = 1000
_CHUNK = 64 * 1024
_BUSY = frozenset({429, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class ClientLimits:
    per_bmc: int = 4
    total: int = 256
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_body_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if min(self.per_bmc, self.total, self.max_body_bytes) < 1:
            raise ValueError("per_bmc, total and max_body_bytes must be at least 1")
        if min(self.connect_timeout, self.read_timeout) <= 0:
            raise ValueError("timeouts must be positive")


class RedfishPool:
    """Process-wide limits. Create one per process and open sessions from it."""

    def __init__(self, limits: ClientLimits = ClientLimits()) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.total)
        # BMCs (base URLs) whose session creation failed: they are spoken to with Basic auth.
        self._basic_only: set[str] = set()

    def uses_basic(self, base_url: str) -> bool:
        """Whether the BMC at ``base_url`` is spoken to with HTTP Basic (sessions failed)."""
        return base_url in self._basic_only

    def session(
        self,
        base_url: str,
        username: str,
        password: str,
        tls: TlsPolicy,
        *,
        vendor: str | None = None,
    ) -> RedfishSession:
        """A session to the BMC at ``base_url`` (``https://host[:port]``); use ``async with``.

        ``vendor`` (what discovery recorded) labels its request metrics from the first request
        on; without it the service root's vendor does, once read.
        """
        return RedfishSession(self, base_url, username, password, tls, vendor=vendor)


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True)
class WriteResult:
    """What a BMC answered to an accepted POST or PATCH.

    ``task`` is the Task (or task monitor) the BMC started for the request, if it says so: the
    ``Location`` of a 202, or a Task resource in the body. ``body`` is the JSON object the BMC
    sent back, if any (an updated resource, an action's response).
    """

    status: int
    body: dict[str, Any] | None
    location: str | None
    etag: str | None
    task: str | None


# Statuses a change request is refused with (the BMC did not act on it). 401/403 and 404/410
# keep their own meanings (credentials, a missing resource).
_REFUSALS = frozenset(range(400, 500)) - {401, 403, 404, 410}
# Failures that happen before a request leaves: connecting, the TLS handshake, a pin mismatch.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerFingerprintMismatch,
    ssl.SSLError,
)


def _same_origin(a: URL, b: URL) -> bool:
    return (
        a.scheme == b.scheme
        and (a.host or "").lower() == (b.host or "").lower()
        and a.port == b.port
    )


def _shown(url: URL) -> str:
    """A URL safe to put in a message: no user info, query or fragment."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


class _PeerRecordingConnector(aiohttp.TCPConnector):
    """Records the certificate of every new connection as soon as its TLS handshake (and the
    policy's check) is done, before a request is written to it.

    aiohttp has no public hook with the transport of a new connection (a response's connection
    is already released when a small body was read with the headers), hence the override.
    """

    def __init__(self, *, ssl: SslArgument, limit: int) -> None:
        super().__init__(ssl=ssl, limit=limit)
        self.peers: list[str] = []

    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> ResponseHandler:
        protocol = await super()._create_connection(req, traces, timeout)
        transport = protocol.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.peers.append(certificate_fingerprint(der))
        return protocol


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class RedfishSession:
    """An authenticated conversation with one BMC (``async with pool.session(...) as s``).

    Entering logs in (Redfish session, or HTTP Basic when the BMC has no SessionService);
    leaving logs out, also after errors. ``root`` is the service root read at login.
    """

    def __init__(
        self,
        pool: RedfishPool,
        base_url: str,
        username: str,
        password: str,
        tls: TlsPolicy,
        *,
        vendor: str | None = None,
    ) -> None:
        base = URL(base_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError("base_url must look like https://host[:port]")
        self._base = base.origin()  # drops any user info or path the caller passed
        self._root_url = self._base.with_path(ROOT_PATH)
        self.base_url = str(self._base)
        # Names the BMC in messages: "127.0.10.7", or "127.0.10.7:8443" off the default port.
        default_port = 443 if base.scheme == "https" else 80
        host = base.host if ":" not in base.host else f"[{base.host}]"
        self.label = host if base.port == default_port else f"{host}:{base.port}"
        self._pool = pool
        self._limits = pool.limits
        self._username = username
        self._password = password
        self._tls = tls
        self._slots = asyncio.Semaphore(pool.limits.per_bmc)
        self._reauth = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self._sessions_url = self._base.with_path(DEFAULT_SESSIONS_PATH)
        self._sessions_advertised = False
        self._token: str | None = None
        self._logout_url: URL | None = None
        self._basic: str | None = None  # Authorization header value in Basic mode
        self.auth_mode: Literal["session", "basic"] | None = None
        self.root: dict[str, Any] = {}
        self._connector: _PeerRecordingConnector | None = None
        self._vendor_known = vendor is not None
        self.vendor = vendor_label(vendor)  # the metrics label, never the address
        self._session_gauge: Gauge | None = None

    @property
    def peer_fingerprint(self) -> str | None:
        """SHA-256 of the certificate the BMC presented on this session's first connection:
        what a successful login actually talked to, whatever the TLS policy accepted."""
        peers = self._connector.peers if self._connector is not None else []
        return peers[0] if peers else None

    def __repr__(self) -> str:
        # Hand-written so neither the password nor the token ever shows in a repr.
        return f"RedfishSession({self.base_url!r}, username={self._username!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> RedfishSession:
        if self._http is not None:
            raise RuntimeError("RedfishSession is already open")
        limits = self._limits
        connector = self._connector = _PeerRecordingConnector(
            ssl=self._tls.ssl(), limit=limits.per_bmc
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                # total bounds a BMC that drips its body byte by byte (each read is on time).
                total=limits.connect_timeout + limits.read_timeout,
                sock_connect=limits.connect_timeout,
                sock_read=limits.read_timeout,
            ),
            headers={"Accept": "application/json", "OData-Version": "4.0"},
            # BMC cookies must not become a second, unmanaged way of being logged in.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        try:
            await self._login()
        except BaseException:
            await self._logout()
            await self._close()
            raise
        if self.auth_mode == "session":
            self._session_gauge = telemetry.session_opened(self.vendor)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._logout()
        finally:
            await self._close()

    async def _close(self) -> None:
        gauge, self._session_gauge = self._session_gauge, None
        if gauge is not None:
            gauge.dec()
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def _login(self) -> None:
        reply = await self._send("GET", self._root_url, authenticate=False)
        root: dict[str, Any] | None = None
        # Some old firmware protects the root too: then log in first and read the root after.
        if reply.status not in (401, 403):
            self._check("GET", self._root_url, reply)
            root = self._json_object(self._root_url, reply)
            self.root = root
            if not self._vendor_known:
                self.vendor = vendor_label(ServiceRoot.parse(root).vendor)
            sessions = ServiceRoot.parse(root).sessions
            if sessions is not None:
                self._sessions_url = self._resolve(sessions)
                self._sessions_advertised = True
        await self._create_session()
        if root is None:
            self.root = await self.get(ROOT_PATH)

    async def _create_session(self) -> None:
        if self._pool.uses_basic(self.base_url):
            await self._use_basic_auth()
            return
        url = self._sessions_url
        credentials = {"UserName": self._username, "Password": self._password}
        try:
            reply = await self._send("POST", url, json_body=credentials, authenticate=False)
        except CertificateMismatch:
            raise  # never send credentials to a certificate we do not trust
        except RedfishError as exc:
            # Dropped connection, timeout, broken answer: if the BMC is really unreachable the
            # Basic probe says so.
            await self._fall_back_to_basic(type(exc).__name__)
            return
        refused = reply.status in (401, 403)
        # Without an advertised SessionService, a 401 may only mean "no such resource for
        # anonymous callers" (auth is checked before routing), so Basic auth gets its chance.
        if refused and self._sessions_advertised:
            self._check("POST", url, reply)
        token = reply.headers.get("X-Auth-Token")
        if refused or not 200 <= reply.status < 300 or not token:
            await self._fall_back_to_basic(
                f"status {reply.status}" + ("" if token or refused else ", no X-Auth-Token")
            )
            return
        self._token = token
        self.auth_mode = "session"
        self._logout_url = self._session_location(reply)

    async def _fall_back_to_basic(self, reason: str) -> None:
        log.info("redfish.basic_auth_fallback", bmc=self.label, reason=reason)
        if await self._use_basic_auth():
            # Only once Basic has worked: a BMC that is simply down or busy is not marked.
            self._pool._basic_only.add(self.base_url)

    async def _use_basic_auth(self) -> bool:
        """Switch to Basic auth; True if the BMC answered the probe with its systems."""
        # Encoded by hand: aiohttp.BasicAuth is deprecated, encode_basic_auth is too new.
        pair = f"{self._username}:{self._password}".encode()
        self._basic = "Basic " + base64.b64encode(pair).decode("ascii")
        self.auth_mode = "basic"
        # Nothing has proved the credentials yet; check them now, because login is where
        # callers expect AuthenticationFailed (not in the middle of an inventory).
        probe = self._resolve(ServiceRoot.parse(self.root).systems or DEFAULT_SYSTEMS_PATH)
        reply = await self._send("GET", probe)
        if reply.status in (401, 403) or reply.status in _BUSY:
            self._check("GET", probe, reply)
        return 200 <= reply.status < 300

    def _session_location(self, reply: _Reply) -> URL | None:
        location = reply.headers.get("Location")
        if not location:
            try:
                body = json.loads(reply.body)
            except ValueError:
                body = None
            ref = body.get("@odata.id") if isinstance(body, dict) else None
            location = ref if isinstance(ref, str) else None
        if not location:
            log.warning("redfish.session_without_location", bmc=self.label)
            return None
        try:
            return self._resolve(location)
        except ProtocolError:
            log.warning("redfish.session_location_off_bmc", bmc=self.label)
            return None

    async def _reauthenticate(self, stale_token: str) -> None:
        """Log in again after a 401 with ``stale_token`` (session expired on the BMC).

        Concurrent requests that all got 401 share one new session: only the first one through
        the lock logs in, the others see the token has changed.
        """
        async with self._reauth:
            if self._token != stale_token:
                return
            log.info("redfish.session_expired", bmc=self.label)
            self._token = None
            self._logout_url = None
            await self._create_session()

    async def _logout(self) -> None:
        url, token = self._logout_url, self._token
        if url is None or token is None or self._http is None:
            return
        try:
            reply = await self._send("DELETE", url)
            if reply.status >= 400:
                log.warning("redfish.logout_refused", url=str(url), status=reply.status)
        except RedfishError as exc:
            # Best effort: the BMC drops the session after its timeout anyway.
            log.warning("redfish.logout_failed", url=str(url), error=str(exc))
        finally:
            self._token = None
            self._logout_url = None

    # -- public reads ----------------------------------------------------------------------

    async def get(self, path_or_odata_id: str) -> dict[str, Any]:
        """The JSON object at a path or ``@odata.id`` of this BMC."""
        return await self._get_url(self._resolve(path_or_odata_id))

    async def get_with_etag(self, path_or_odata_id: str) -> tuple[dict[str, Any], str | None]:
        """The JSON object and its ETag (the header, else the body's ``@odata.etag``), for a
        PATCH with ``If-Match``."""
        url = self._resolve(path_or_odata_id)
        reply = await self._authenticated("GET", url)
        self._check("GET", url, reply)
        body = self._json_object(url, reply)
        etag = reply.headers.get("ETag")
        if not etag and isinstance(body.get("@odata.etag"), str):
            etag = body["@odata.etag"]
        return body, etag or None

    async def get_many(self, paths: Sequence[str]) -> list[dict[str, Any]]:
        """`get` for each path, concurrently within the per-BMC cap, in the order given.

        A path listed twice is fetched once (both entries are the same dict). The first error
        is raised and the remaining requests are cancelled.
        """
        urls = [self._resolve(p) for p in paths]
        unique = list(dict.fromkeys(urls))
        tasks = [asyncio.ensure_future(self._get_url(url)) for url in unique]
        try:
            bodies = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        by_url = dict(zip(unique, bodies, strict=True))
        return [by_url[url] for url in urls]

    async def members(self, collection_path: str) -> list[str]:
        """The member paths of a collection, following ``Members@odata.nextLink`` pages.

        Paths are on this BMC (query kept, fragment dropped), without duplicates, in order.
        """
        found: dict[str, None] = {}
        seen: set[URL] = set()
        next_url: URL | None = self._resolve(collection_path)
        while next_url is not None and next_url not in seen:
            if len(seen) >= MAX_PAGES:
                raise ProtocolError(
                    f"BMC {self.label} pages {collection_path} beyond {MAX_PAGES} pages",
                    url=_shown(next_url),
                )
            seen.add(next_url)
            page = await self._get_url(next_url)
            items = page.get("Members")
            for item in items if isinstance(items, list) else []:
                ref = item.get("@odata.id") if isinstance(item, dict) else None
                if isinstance(ref, str) and ref.strip():
                    found.setdefault(self._resolve(ref).raw_path_qs, None)
            next_link = page.get("Members@odata.nextLink")
            next_url = self._resolve(next_link) if isinstance(next_link, str) else None
        return list(found)

    @property
    def expands_subordinates(self) -> bool:
        """The BMC advertises ``$expand=.`` (``ProtocolFeaturesSupported.ExpandQuery.NoLinks``)."""
        features = self.root.get("ProtocolFeaturesSupported")
        expand = features.get("ExpandQuery") if isinstance(features, dict) else None
        return isinstance(expand, dict) and expand.get("NoLinks") is True

    async def expanded_members(self, collection_path: str) -> list[dict[str, Any]] | None:
        """A collection's member bodies in one request (``$expand=.``), in order.

        ``None`` when the BMC does not advertise that expansion, or its answer is not a whole
        expanded collection (a member left as a bare link, or a next page): the caller reads the
        members one by one, as from any BMC.
        """
        if not self.expands_subordinates:
            return None
        page = await self._get_url(self._resolve(collection_path).with_query("$expand=."))
        items = page.get("Members")
        if not isinstance(items, list) or "Members@odata.nextLink" in page:
            return None
        bodies = [item for item in items if isinstance(item, dict) and len(item) > 1]
        return bodies if len(bodies) == len(items) else None

    # -- changes -----------------------------------------------------------------------------

    async def post(self, path_or_odata_id: str, body: dict[str, Any]) -> WriteResult:
        """POST ``body`` (an action's parameters) to a path of this BMC.

        Raises `RequestRefused` when the BMC refuses (4xx), `ResponseLost` when the request may
        have reached the BMC but its answer did not come back.
        """
        return await self._write("POST", path_or_odata_id, body, None)

    async def patch(
        self, path_or_odata_id: str, body: dict[str, Any], *, etag: str | None = None
    ) -> WriteResult:
        """PATCH ``body`` onto a resource, with ``If-Match: etag`` when an ETag is given (many
        BMCs require it: 428 without, 412 when the resource changed since it was read)."""
        return await self._write("PATCH", path_or_odata_id, body, etag)

    async def _write(
        self, method: str, path: str, body: dict[str, Any], etag: str | None
    ) -> WriteResult:
        url = self._resolve(path)
        headers = {"If-Match": etag} if etag else {}
        reply = await self._authenticated(method, url, json_body=body, headers=headers)
        self._check(method, url, reply)
        return self._write_result(reply)

    def _write_result(self, reply: _Reply) -> WriteResult:
        try:
            parsed = json.loads(reply.body) if reply.body.strip() else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        location = self._same_origin_path(reply.headers.get("Location"))
        # Wherever the vendor puts it: Location, the body as a Task, a message's MessageArgs.
        task = self._same_origin_path(task_reference(reply.status, location, body))
        return WriteResult(reply.status, body, location, reply.headers.get("ETag"), task)

    def _same_origin_path(self, ref: object) -> str | None:
        if not isinstance(ref, str) or not ref.strip():
            return None
        try:
            return self._resolve(ref).raw_path_qs
        except ProtocolError:
            log.warning("redfish.location_off_bmc", bmc=self.label)
            return None

    async def _authenticated(
        self,
        method: str,
        url: URL,
        *,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Reply:
        """One request; a 401 with a session token logs in again (the session expired on the
        BMC) and repeats it once — a 401 means the BMC did not act on it."""
        stale = self._token
        reply = await self._send(method, url, json_body=json_body, headers=headers)
        if reply.status == 401 and stale is not None:
            await self._reauthenticate(stale)
            reply = await self._send(method, url, json_body=json_body, headers=headers)
        return reply

    # -- plumbing --------------------------------------------------------------------------

    def _resolve(self, ref: str) -> URL:
        """Join a path or ``@odata.id`` to the BMC; refuse anything that leaves the BMC."""
        try:
            url = self._root_url.join(URL(ref.strip())).with_fragment(None)
        except ValueError:
            raise ProtocolError(
                f"BMC {self.label}: {ref[:200]!r} is not a usable link", url=self.base_url
            ) from None
        if not _same_origin(url, self._base):
            raise ProtocolError(
                f"BMC {self.label} links to {_shown(url)}, which is off the BMC; Racksmith "
                "only follows links on the BMC's own host and port",
                url=_shown(url),
            )
        return url

    async def _get_url(self, url: URL) -> dict[str, Any]:
        reply = await self._authenticated("GET", url)
        self._check("GET", url, reply)
        return self._json_object(url, reply)

    async def _send(
        self,
        method: str,
        url: URL,
        *,
        json_body: dict[str, Any] | None = None,
        authenticate: bool = True,
        headers: dict[str, str] | None = None,
    ) -> _Reply:
        """One request, following same-origin redirects for GET only."""
        reply = await self._exchange(method, url, json_body, authenticate, headers)
        hops = 0
        while method == "GET" and reply.status in _REDIRECTS and "Location" in reply.headers:
            location = reply.headers["Location"]
            try:
                target = url.join(URL(location)).with_fragment(None)
            except ValueError:
                raise ProtocolError(
                    f"BMC {self.label} redirected GET {url.path} to an unusable Location",
                    url=_shown(url),
                    status=reply.status,
                ) from None
            if not _same_origin(target, self._base):
                raise ProtocolError(
                    f"BMC {self.label} redirected GET {url.path} off the BMC to "
                    f"{_shown(target)}; Racksmith only follows redirects on the BMC's own host "
                    "and port (is this address a BMC, or a login portal in front of one?)",
                    url=_shown(url),
                    status=reply.status,
                )
            hops += 1
            if hops > MAX_REDIRECTS:
                raise ProtocolError(
                    f"BMC {self.label} redirected GET {url.path} more than {MAX_REDIRECTS} times",
                    url=_shown(url),
                    status=reply.status,
                )
            url = target
            reply = await self._exchange(method, url, None, authenticate, None)
        return reply

    async def _exchange(
        self,
        method: str,
        url: URL,
        json_body: dict[str, Any] | None,
        authenticate: bool,
        extra_headers: dict[str, str] | None,
    ) -> _Reply:
        http = self._http
        if http is None:
            raise RuntimeError("use RedfishSession as an async context manager")
        headers: dict[str, str] = dict(extra_headers or {})
        if authenticate and self._token is not None:
            headers["X-Auth-Token"] = self._token
        elif authenticate and self._basic is not None:
            headers["Authorization"] = self._basic
        async with self._slots, self._pool._slots:
            with telemetry.RequestObserver(self.vendor, method, url) as observed:
                try:
                    async with http.request(
                        method,
                        url,
                        json=json_body,
                        headers=headers,
                        allow_redirects=False,
                    ) as response:
                        observed.answered(response.status)
                        body = await self._read_capped(method, url, response)
                        reply = _Reply(response.status, response.headers, body)
                except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
                    # `from None`: aiohttp exceptions can carry the request headers (token,
                    # Basic credentials) in their repr, and chained causes end up in logs.
                    raise self._transport_error(method, url, exc) from None
        log.debug("redfish.http", method=method, url=str(url), status=reply.status)
        return reply

    async def _read_capped(self, method: str, url: URL, response: aiohttp.ClientResponse) -> bytes:
        """The body, reading at most ``max_body_bytes + 1`` bytes."""
        cap = self._limits.max_body_bytes
        declared = response.content_length
        # A declared length over the cap is refused without reading a byte of it.
        if declared is None or declared <= cap:
            chunks: list[bytes] = []
            size = 0
            while size <= cap:
                chunk = await response.content.read(min(_CHUNK, cap + 1 - size))
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
        # Closing (not releasing) drops the connection instead of draining a huge body.
        response.close()
        raise ProtocolError(
            f"BMC {self.label} answered {method} {url.path} with a body over the "
            f"{cap}-byte limit; refusing to read it",
            url=_shown(url),
            status=response.status,
        )

    def _transport_error(self, method: str, url: URL, exc: BaseException) -> RedfishError:
        where = f"{method} {url.path}"
        shown = _shown(url)
        if method in ("POST", "PATCH", "PUT", "DELETE") and not isinstance(exc, _NOT_SENT):
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return ResponseLost(
                f"BMC {self.label} did not answer {where} ({reason}) after the request was "
                "sent: it may have acted on it",
                url=shown,
            )
        if isinstance(exc, aiohttp.ServerFingerprintMismatch):
            return CertificateMismatch(
                f"BMC {self.label} presented a certificate with SHA-256 {exc.got.hex()}, but "
                f"{exc.expected.hex()} is pinned: the certificate was replaced (reset, "
                "firmware update) or the connection is intercepted; check, then re-pin",
                url=shown,
                presented=exc.got.hex(),
            )
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            reason = getattr(exc.certificate_error, "verify_message", None) or "not trusted"
            return CertificateMismatch(
                f"BMC {self.label}'s certificate failed verification against the profile's "
                f"{self._tls.description} ({reason})",
                url=shown,
            )
        if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
            ssl_error = exc.os_error if isinstance(exc, aiohttp.ClientSSLError) else exc
            reason = getattr(ssl_error, "reason", None) or type(ssl_error).__name__
            return BmcUnreachable(
                f"TLS handshake with BMC {self.label} failed ({reason})", url=shown
            )
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return BmcUnreachable(
                f"BMC {self.label} did not complete a TCP/TLS connection within "
                f"{self._limits.connect_timeout:g} s",
                url=shown,
            )
        if isinstance(exc, TimeoutError):
            return BmcUnreachable(
                f"BMC {self.label} did not answer {where} within {self._limits.read_timeout:g} s",
                url=shown,
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            return BmcUnreachable(f"cannot connect to BMC {self.label} ({reason})", url=shown)
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
            return ProtocolError(
                f"BMC {self.label} sent a broken HTTP response to {where}", url=shown
            )
        return BmcUnreachable(
            f"connection to BMC {self.label} failed during {where} ({type(exc).__name__})",
            url=shown,
        )

    def _check(self, method: str, url: URL, reply: _Reply) -> None:
        """Raise the error an unsuccessful status means."""
        status = reply.status
        if 200 <= status < 300:
            return
        where = f"{method} {url.path}"
        shown = _shown(url)
        try:
            detail = message_id(json.loads(reply.body))
        except ValueError:
            detail = None
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            raise AuthenticationFailed(
                f"BMC {self.label} answered {status} to {where}{said}: the credentials for "
                f"user {self._username!r} were refused or lack the privilege",
                url=shown,
                status=status,
            )
        if status in _BUSY:
            retry_after = _retry_after(reply.headers)
            later = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
            raise BmcBusy(
                f"BMC {self.label} answered {status} (busy) to {where}{said}; retry later{later}",
                url=shown,
                status=status,
                retry_after=retry_after,
            )
        if status in (404, 410):
            raise ResourceNotFound(
                f"BMC {self.label} has no {url.path} ({status}{said})", url=shown, status=status
            )
        if method != "GET" and status in _REFUSALS:
            raise RequestRefused(
                f"BMC {self.label} refused {where} with {status}{said}",
                url=shown,
                status=status,
                message_id=detail,
            )
        raise ProtocolError(
            f"BMC {self.label} answered {where} with unexpected status {status}{said}",
            url=shown,
            status=status,
        )

    def _json_object(self, url: URL, reply: _Reply) -> dict[str, Any]:
        try:
            data = json.loads(reply.body)
        except ValueError:
            content_type = reply.headers.get("Content-Type", "no Content-Type")
            raise ProtocolError(
                f"BMC {self.label} answered GET {url.path} with a body that is not JSON "
                f"({len(reply.body)} bytes, {content_type[:60]})",
                url=_shown(url),
                status=reply.status,
            ) from None
        if not isinstance(data, dict):
            raise ProtocolError(
                f"BMC {self.label} answered GET {url.path} with JSON that is not an object",
                url=_shown(url),
                status=reply.status,
            )
        return data
