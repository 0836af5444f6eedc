"""Where Racksmith may connect to on someone's say-so: http(s) URLs whose host is, or resolves
only to, allowed addresses.

Webhooks and the ``source_url`` of firmware binaries and OS images make Racksmith send requests to
an address someone typed; unchecked, that is a server-side request forgery tool (cloud metadata
services, the Kubernetes API, the database, NATS, the BMC network). So by default a target must be
globally routable: not private, shared (CGNAT, where Alibaba's metadata service lives),
unique-local (fd00:ec2::254 is AWS's), loopback, link-local (169.254.169.254), multicast, reserved
or unspecified, nor a known metadata address that looks public (Azure's 168.63.129.16), nor an
IPv6 address that embeds a refused IPv4 one (IPv4-mapped, 6to4, NAT64, Teredo). Internal
receivers and sources are allowed by naming their networks in the setting of their
``Destination`` (``RACKSMITH_WEBHOOK_ALLOWED_NETWORKS``,
``RACKSMITH_ARTIFACT_SOURCE_ALLOWED_NETWORKS``); the blocks that hold only the platform's own host
or its cloud's metadata service need an allowed network inside them (naming ``0.0.0.0/0`` does
not open them). The rule is checked when the URL is saved and again on every connection, by the
resolver the HTTP client connects through — a name may resolve elsewhere by then (DNS rebinding).
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
    # What a refusal tells to do, before "in RACKSMITH_…_ALLOWED_NETWORKS to allow it."
    remedy: str
    # Why credentials in the URL are refused (the URL is shown in responses and logs).
    no_credentials: str

    @property
    def variable(self) -> str:
        return f"RACKSMITH_{self.setting.upper()}"


WEBHOOK_RECEIVERS = Destination(
    "webhook_allowed_networks",
    "Webhooks send to globally routable addresses; name an internal receiver's network",
    "Credentials in the URL are not allowed; receivers verify the signature.",
)
ARTIFACT_SOURCES = Destination(
    "artifact_source_allowed_networks",
    "Artifacts are fetched from globally routable addresses; name an internal source's network",
    "Credentials in the URL are not allowed: it is shown in responses and events.",
)


def _blocks(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(block), what) for block, what in pairs)


# Refused unless an allowed network lies inside the block: the platform's own host, and cloud
# metadata services (which hand out credentials to whoever asks from inside).
PROTECTED = _blocks(
    ("0.0.0.0/8", "this host"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("100.100.100.200/32", "a cloud metadata address"),
    ("168.63.129.16/32", "a cloud metadata address"),
    ("192.0.0.192/32", "a cloud metadata address"),
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
)
# IPv6 prefixes whose addresses carry an IPv4 address the packets may end up at.
TEREDO = ipaddress.IPv6Network("2001::/32")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class TargetError(ValueError):
    """A URL Racksmith may not connect to; the message says why, for the field holding it."""


class TargetRefusedError(OSError):
    """Raised by the resolver while connecting, so the HTTP client reports it as a failed
    connection (no request is sent)."""


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class TargetPolicy:
    # Internal networks targets may be in, beside every globally routable address.
    networks: tuple[IPNetwork, ...]
    destination: Destination = WEBHOOK_RECEIVERS

    @classmethod
    def from_settings(cls, settings: Settings, destination: Destination) -> TargetPolicy:
        allowed: str = getattr(settings, destination.setting)
        return cls(tuple(parse_networks(allowed.split(","))), destination)

    def refusal(self, address: IPAddress) -> str | None:
        """Why Racksmith may not connect to ``address`` (a class of addresses), or None."""
        listed = [n for n in self.networks if n.version == address.version and address in n]
        for block, what in PROTECTED:
            if block.version == address.version and address in block:
                inside = any(n.subnet_of(block) for n in listed)  # type: ignore[arg-type]
                return None if inside else what
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # Connecting to it is connecting to the IPv4 address.
            mapped = self.refusal(address.ipv4_mapped)
            return None if mapped is None else f"IPv4-mapped {mapped}"
        embedded = _embedded_ipv4(address)
        if embedded is not None and not listed:
            inner = self.refusal(embedded)
            if inner is not None:
                return f"an IPv6 address embedding {embedded} ({inner})"
        if listed:
            return None
        if address in TEREDO:
            return "a Teredo address (its IPv4 address is hidden)"
        if not address.is_global:
            return "not globally routable (private, shared or reserved)"
        return None

    def allows(self, address: IPAddress) -> bool:
        return self.refusal(address) is None

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        refused = [(a, why) for a in addresses if (why := self.refusal(a)) is not None]
        if not refused:
            return
        shown = ", ".join(f"{a} ({why})" for a, why in refused)
        fix = f"{self.destination.remedy} in {self.destination.variable} to allow it."
        if _literal(host) is not None:
            raise TargetError(f"{host} is refused: {refused[0][1]}. {fix}")
        raise TargetError(f"{host} resolves to refused addresses: {shown}. {fix}")


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
