"""Where Racksmith may connect to on someone's say-so: http(s) URLs whose host is, or resolves
only into, allowed networks.

Webhooks and the ``source_url`` of firmware binaries and OS images make Racksmith send requests to
an address someone typed; unchecked, that is a server-side request forgery tool (cloud metadata
services, the database, NATS, the BMC network). So a target must lie in the networks its
``Destination``'s setting allows (``RACKSMITH_WEBHOOK_ALLOWED_NETWORKS``,
``RACKSMITH_ARTIFACT_SOURCE_ALLOWED_NETWORKS``). It is checked when the URL is saved and again on
every connection, by the resolver the HTTP client connects through — a name may resolve
elsewhere by then (DNS rebinding). With the setting empty, any address is allowed except
loopback, link-local (metadata services), multicast, unspecified and reserved ones: nothing on
the platform's own host or reachable only from it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from shared.core.iprange import IPAddress, IPNetwork, parse_networks
from shared.core.settings import Settings

SCHEMES = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Destination:
    """One kind of outbound target: its allowlist setting and how errors name it."""

    setting: str
    what: str
    # Why credentials in the URL are refused (the URL is shown in responses and logs).
    no_credentials: str

    @property
    def variable(self) -> str:
        return f"RACKSMITH_{self.setting.upper()}"


WEBHOOK_RECEIVERS = Destination(
    "webhook_allowed_networks",
    "the networks webhooks may send to",
    "Credentials in the URL are not allowed; receivers verify the signature.",
)
ARTIFACT_SOURCES = Destination(
    "artifact_source_allowed_networks",
    "the networks artifacts may be fetched from",
    "Credentials in the URL are not allowed: it is shown in responses and events.",
)


class TargetError(ValueError):
    """A URL Racksmith may not connect to; the message says why, for the field holding it."""


class TargetRefusedError(OSError):
    """Raised by the resolver while connecting, so the HTTP client reports it as a failed
    connection (no request is sent)."""


@dataclass(frozen=True)
class TargetPolicy:
    # Empty: the default rule (see the module docstring).
    networks: tuple[IPNetwork, ...]
    destination: Destination = WEBHOOK_RECEIVERS

    @classmethod
    def from_settings(cls, settings: Settings, destination: Destination) -> TargetPolicy:
        allowed: str = getattr(settings, destination.setting)
        return cls(tuple(parse_networks(allowed.split(","))), destination)

    def allows(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if self.networks:
            return any(address in network for network in self.networks)
        return not (
            address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_unspecified
            or address.is_reserved
            # "This network": Linux connects 0.x.y.z to the local host.
            or (isinstance(address, ipaddress.IPv4Address) and address.packed[0] == 0)
        )

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        refused = [str(a) for a in addresses if not self.allows(a)]
        if not refused:
            return
        where = f"{self.destination.what} ({self.destination.variable})"
        if _literal(host) is not None:
            raise TargetError(f"{host} is outside {where}.")
        raise TargetError(f"{host} resolves to {', '.join(refused)}, outside {where}.")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_url(url: str, destination: Destination) -> SplitResult:
    """The URL split, if it is one Racksmith can use at all (before any address check)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise TargetError("Enter a valid URL.") from None
    if parts.scheme not in SCHEMES:
        raise TargetError("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise TargetError("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        # The URL is shown in responses and logs; credentials in it would leak.
        raise TargetError(destination.no_credentials)
    if parts.fragment:
        raise TargetError("The URL must not have a fragment.")
    return parts


def check_literal(url: str, policy: TargetPolicy) -> None:
    """Check a URL without resolving: its form, and its host if that is an address. The
    addresses of a name are checked by ``GuardedResolver`` at connection time."""
    host = parse_url(url, policy.destination).hostname or ""
    address = _literal(host)
    if address is not None:
        policy.check(host, [address])


async def check_url(url: str, policy: TargetPolicy) -> None:
    """Everything a saved URL must satisfy: its form, and every address its host resolves to."""
    parts = parse_url(url, policy.destination)
    host = parts.hostname or ""
    address = _literal(host)
    if address is not None:
        policy.check(host, [address])
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or SCHEMES[parts.scheme], type=socket.SOCK_STREAM
        )
    except OSError:
        raise TargetError(f"{host} does not resolve.") from None
    policy.check(host, [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos])


class GuardedResolver(AbstractResolver):
    """The HTTP client's resolver: answers only with allowed addresses, and refuses a name that
    resolves to any other (the same rule as when the URL was saved)."""

    def __init__(self, policy: TargetPolicy) -> None:
        self.policy = policy
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        try:
            self.policy.check(host, [ipaddress.ip_address(r["host"]) for r in results])
        except TargetError as exc:
            raise TargetRefusedError(str(exc)) from None
        return results

    async def close(self) -> None:
        await self._resolver.close()
