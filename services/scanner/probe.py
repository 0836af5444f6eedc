"""Is there a Redfish service at ip:port? TCP connect → TLS → ``GET /redfish/v1/``.

The first step is a bare TCP connect with a short timeout, because almost every address of a
data-centre range is silent or refuses; only addresses that accept get the (more expensive) TLS
handshake and HTTP request. Certificates are not verified at this stage — BMCs are self-signed —
but their SHA-256 fingerprint is recorded so a later change can be flagged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import ssl
import warnings
from dataclasses import dataclass
from typing import Any

import aiohttp

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


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def service_root_identity(root: Any) -> dict[str, str | None] | None:
    """The identity of a real Redfish service root, or None for anything else.

    A service root has a ``RedfishVersion`` and either a ``Systems`` link or a ``UUID``; a web
    server that happens to answer JSON on that path does not.
    """
    if not isinstance(root, dict) or not _text(root.get("RedfishVersion")):
        return None
    systems = root.get("Systems")
    has_systems = isinstance(systems, dict) and isinstance(systems.get("@odata.id"), str)
    if not has_systems and not _text(root.get("UUID")):
        return None
    vendor = _text(root.get("Vendor"))
    if vendor is None and isinstance(root.get("Oem"), dict) and root["Oem"]:
        # Before Redfish 1.5 (and on many BMCs since) the vendor only shows as the Oem key.
        vendor = next(iter(root["Oem"]))
    return {
        "vendor": vendor,
        "product": _text(root.get("Product")),
        "redfish_version": _text(root.get("RedfishVersion")),
        "uuid": _text(root.get("UUID")),
    }


def _insecure_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # BMCs in the field still run old TLS stacks (iDRAC 7, iLO 4); discovery must still see
    # them, so the deprecation of TLS 1.0 is deliberately accepted here and nowhere else.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


class Prober:
    """Probes with shared TLS settings and one aiohttp session (no connection reuse)."""

    def __init__(self, *, connect_timeout: float, probe_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.probe_timeout = probe_timeout
        self._tls = _insecure_tls()
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

        ``None`` if nothing accepts the connection or TLS fails: not a BMC.
        """
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, port), timeout=self.connect_timeout
            )
        except (OSError, TimeoutError):
            return None
        try:
            await asyncio.wait_for(writer.start_tls(self._tls), timeout=self.probe_timeout)
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        except (OSError, TimeoutError, ssl.SSLError, AttributeError):
            return None
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1)
        return hashlib.sha256(der).hexdigest() if der else None

    async def probe(self, ip: str, port: int) -> RedfishService | None:
        fingerprint = await self.certificate(ip, port)
        if fingerprint is None:
            return None
        try:
            return await self._read_service_root(ip, port, fingerprint)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, ssl.SSLError):
            return None

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
