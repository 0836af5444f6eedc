"""Is there a Redfish service at ip:port? TCP connect → TLS → ``GET /redfish/v1/``.

The first step is a bare TCP connect with a short timeout, because almost every address of a
data-centre range is silent or refuses; only addresses that accept get the (more expensive) TLS
handshake and HTTP request. Certificates are not verified at this stage — BMCs are self-signed —
but their SHA-256 fingerprint is recorded so a later change can be flagged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from shared.observability.metrics import scan_probes
from shared.redfish.resources import ServiceRoot
from shared.redfish.tls import certificate_fingerprint, legacy_insecure_context

MAX_ROOT_BYTES = 256 * 1024


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


class Prober:
    """Probes with shared TLS settings and one aiohttp session (no connection reuse)."""

    def __init__(self, *, connect_timeout: float, probe_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.probe_timeout = probe_timeout
        self._tls = legacy_insecure_context()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Prober:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._tls, force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(
                total=self.probe_timeout, sock_connect=self.connect_timeout
            ),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def certificate(self, ip: str, port: int) -> str | None:
        """TCP connect (short timeout), then a TLS handshake; the peer certificate's SHA-256.

        ``None`` if nothing accepts the connection or TLS fails: not a BMC (the outcome counts in
        ``racksmith_scan_probes_total``).
        """
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, port), timeout=self.connect_timeout
            )
        except ConnectionRefusedError:
            scan_probes("refused").inc()
            return None
        except (OSError, TimeoutError):  # no answer, or the network says nobody is there
            scan_probes("silent").inc()
            return None
        try:
            await asyncio.wait_for(writer.start_tls(self._tls), timeout=self.probe_timeout)
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        except TimeoutError:
            scan_probes("timeout_after_accept").inc()
            return None
        except (OSError, ssl.SSLError, AttributeError):
            scan_probes("tls_failed").inc()
            return None
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1)
        if not der:
            scan_probes("tls_failed").inc()
            return None
        return certificate_fingerprint(der)

    async def probe(self, ip: str, port: int) -> RedfishService | None:
        fingerprint = await self.certificate(ip, port)
        if fingerprint is None:
            return None
        try:
            service = await self._read_service_root(ip, port, fingerprint)
        except TimeoutError:
            service, outcome = None, "timeout_after_accept"
        except (
            Exception
        ):  # whatever a device answers (even JSON nested to RecursionError): not Redfish
            service, outcome = None, "not_redfish"
        else:
            outcome = "bmc" if service is not None else "not_redfish"
        scan_probes(outcome).inc()
        return service

    async def _read_service_root(
        self, ip: str, port: int, fingerprint: str
    ) -> RedfishService | None:
        assert self._session is not None, "use Prober as an async context manager"
        url = base_url(ip, port)
        async with self._session.get(
            f"{url}/redfish/v1/",
            allow_redirects=False,
            headers={"Accept": "application/json"},
        ) as response:
            if response.status != 200:
                return None
            body = await response.content.read(MAX_ROOT_BYTES + 1)
            if len(body) > MAX_ROOT_BYTES:
                return None
        identity = service_root_identity(json.loads(body))
        if identity is None:
            return None
        return RedfishService(ip=ip, port=port, url=url, fingerprint=fingerprint, **identity)
