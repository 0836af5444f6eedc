"""Is there a Redfish service at ip:port? TCP connect → TLS → ``GET /redfish/v1/``, one connection.

The first step is a bare TCP connect with a short timeout, because almost every address of a
data-centre range is silent or refuses; only addresses that accept get the (more expensive) TLS
handshake and HTTP request. The Redfish question is asked over the connection that completed the
handshake: a responder that has just finished a handshake is alive, and a second connection
would pay a second handshake and a second connect timeout, which a busy scanner's own backlog
can eat. Certificates are not verified at this stage — BMCs are self-signed — but their SHA-256
fingerprint is recorded so a later change can be flagged.

Timeouts are measured by ``LoopLag.wait_for``: time the scanner's event loop spent stalled does
not count as the network's silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
from dataclasses import dataclass
from typing import Any

from services.scanner.pacing import Pacing
from shared.redfish.resources import ServiceRoot
from shared.redfish.tls import certificate_fingerprint, legacy_insecure_context

MAX_ROOT_BYTES = 256 * 1024
# Status line plus headers of the service root's answer.
MAX_HEAD_BYTES = 64 * 1024
# An accepted connection that waited longer than this for a handshake slot is replaced by a
# fresh one: well under the idle time after which BMC web servers drop a silent connection.
FRESH_CONNECTION_S = 5.0


@dataclass(frozen=True)
class RedfishService:
    ip: str
    port: int
    url: str
    vendor: str | None
    product: str | None
    redfish_version: str | None
    uuid: str | None
    fingerprint: str | None


def base_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"https://{host}:{port}"


def service_root_identity(root: Any) -> dict[str, str | None] | None:
    """The identity of a real Redfish service root, or None for anything else.

    A service root has a ``RedfishVersion`` and either a ``Systems`` link or a ``UUID``; a web
    server that happens to answer JSON on that path does not.
    """
    if not isinstance(root, dict):
        return None
    parsed = ServiceRoot.parse(root)
    if parsed.redfish_version is None or (parsed.systems is None and parsed.uuid is None):
        return None
    return {
        "vendor": parsed.vendor,
        "product": parsed.product,
        "redfish_version": parsed.redfish_version,
        "uuid": parsed.uuid,
    }


@dataclass(frozen=True)
class ProbeResult:
    """What one probe of ip:port came to; ``outcome`` is one of ``PROBE_OUTCOMES``."""

    outcome: str
    service: RedfishService | None = None
    # No answer in time (to the connect, or after it was accepted): worth another try.
    timed_out: bool = False


class NotRedfish(Exception):
    """The responder answered, but not with a Redfish service root."""


class Prober:
    """Probes with shared TLS settings, paced by the process's ``Pacing``."""

    def __init__(self, pacing: Pacing, *, connect_timeout: float, probe_timeout: float) -> None:
        self.pacing = pacing
        self.connect_timeout = connect_timeout
        self.probe_timeout = probe_timeout
        self._tls = legacy_insecure_context()

    async def probe(self, ip: str, port: int) -> ProbeResult:
        lag = self.pacing.lag
        await self.pacing.backlog.room()
        try:
            async with self.pacing.connects.slot():
                reader, writer = await self._connect(ip, port)
        except ConnectionRefusedError:
            return ProbeResult("refused")
        except TimeoutError:
            return ProbeResult("silent", timed_out=True)
        except OSError:  # the network says nobody is there (unreachable): no point retrying
            return ProbeResult("silent")
        try:
            async with self.pacing.handshake() as waited:
                if waited > FRESH_CONNECTION_S:
                    # A BMC drops a connection that sent no TLS hello for a while: start afresh.
                    writer.close()
                    reader, writer = await self._connect(ip, port)
                return await lag.wait_for(self._ask(reader, writer, ip, port), self.probe_timeout)
        except (TimeoutError, OSError):  # OSError: it accepted, then refused the fresh connect
            return ProbeResult("timeout_after_accept", timed_out=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await lag.wait_for(writer.wait_closed(), 1)

    async def _connect(
        self, ip: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self.pacing.lag.wait_for(
            asyncio.open_connection(ip, port, limit=MAX_HEAD_BYTES), self.connect_timeout
        )

    async def _ask(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, port: int
    ) -> ProbeResult:
        try:
            await writer.start_tls(self._tls)
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        except (OSError, ssl.SSLError, AttributeError):
            return ProbeResult("tls_failed")
        if not der:
            return ProbeResult("tls_failed")
        fingerprint = certificate_fingerprint(der)
        url = base_url(ip, port)
        try:
            root = await read_service_root(reader, writer, url.removeprefix("https://"))
            identity = service_root_identity(json.loads(root))
        except TimeoutError:
            raise
        except Exception:  # whatever a device answers (even JSON nested to RecursionError)
            return ProbeResult("not_redfish")
        if identity is None:
            return ProbeResult("not_redfish")
        service = RedfishService(ip=ip, port=port, url=url, fingerprint=fingerprint, **identity)
        return ProbeResult("bmc", service)


async def read_service_root(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
) -> bytes:
    """``GET /redfish/v1/`` over an open connection; the body of a 200 answer.

    HTTP/1.1 with ``Connection: close``, so the body ends at its length, its last chunk or the
    connection's end. Anything else (another status, a body over ``MAX_ROOT_BYTES``, a broken
    framing) raises ``NotRedfish``.
    """
    writer.write(
        f"GET /redfish/v1/ HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
        "User-Agent: racksmith-scanner\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise NotRedfish("no HTTP answer") from exc
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "200":
        raise NotRedfish(status_line[:80])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_ROOT_BYTES:
            raise NotRedfish("service root too large")
        return await reader.readexactly(length)
    body = await reader.read(MAX_ROOT_BYTES + 1)
    while len(body) <= MAX_ROOT_BYTES:
        more = await reader.read(MAX_ROOT_BYTES + 1 - len(body))
        if not more:
            return body
        body += more
    raise NotRedfish("service root too large")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            return body
        if len(body) + size > MAX_ROOT_BYTES:
            raise NotRedfish("service root too large")
        body += await reader.readexactly(size)
        await reader.readexactly(2)
