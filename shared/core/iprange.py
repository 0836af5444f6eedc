"""Address ranges for discovery: validation, size, CIDR shorthand, and slicing into chunks.

The scanner is an SSRF tool in the wrong hands, so every range is bounded in size and, when
``RACKSMITH_SCAN_ALLOWED_NETWORKS`` is set, confined to those networks. Addresses no BMC has —
the platform's own host (loopback), link-local (cloud metadata services), multicast,
unspecified and reserved ones — are refused unless an allowed network lies inside their block:
naming ``127.0.0.0/8`` is an explicit permission, ``0.0.0.0/0`` is not.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RangeError(ValueError):
    """An invalid range; ``field`` names the input that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AddressRange:
    first: IPAddress
    last: IPAddress

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, IPAddress, int]]:
        """(index, first address, address count) for consecutive slices of ``chunk_size``."""
        start = int(self.first)
        end = int(self.last)
        index = 0
        while start <= end:
            count = min(chunk_size, end - start + 1)
            yield index, ipaddress.ip_address(start), count
            start += count
            index += 1


def parse_address(field: str, value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise RangeError(field, "Enter a valid IPv4 or IPv6 address.") from None


def from_cidr(value: str) -> AddressRange:
    """A network's usable hosts: ``10.0.1.0/24`` is 10.0.1.1 to 10.0.1.254."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise RangeError("cidr", "Enter a valid network in CIDR notation.") from None
    if network.num_addresses <= 2:
        return AddressRange(network[0], network[-1])
    return AddressRange(network[1], network[-2])


def build(ip_from: str, ip_to: str) -> AddressRange:
    first = parse_address("ip_from", ip_from)
    last = parse_address("ip_to", ip_to)
    if first.version != last.version:
        raise RangeError("ip_to", "ip_from and ip_to must be of the same address family.")
    if first > last:  # type: ignore[operator]
        raise RangeError("ip_to", "ip_to must not be lower than ip_from.")
    return AddressRange(first, last)


def parse_networks(values: Sequence[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


# Blocks without BMCs, and what to call them in an error.
SPECIAL_BLOCKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(block), what)
    for block, what in (
        ("0.0.0.0/8", "unspecified (this host)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)
_ANYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def _overlaps(address_range: AddressRange, network: IPNetwork) -> bool:
    return (
        address_range.first.version == network.version
        and int(address_range.first) <= int(network[-1])
        and int(network[0]) <= int(address_range.last)
    )


def check_limits(
    address_range: AddressRange,
    *,
    max_addresses: int,
    allowed: Sequence[IPNetwork],
    fields: tuple[str, str] = ("ip_from", "ip_to"),
) -> None:
    """Raise ``RangeError`` naming ``fields`` (first, last) — both ``cidr`` for a CIDR."""
    first_field, last_field = fields
    if address_range.size > max_addresses:
        raise RangeError(
            last_field,
            f"The range holds {address_range.size} addresses; the maximum is {max_addresses} "
            "(RACKSMITH_SCAN_MAX_ADDRESSES).",
        )
    holders = [
        network
        for network in (allowed or _ANYWHERE)
        if address_range.first in network and address_range.last in network
    ]
    if not holders:
        raise RangeError(
            first_field,
            "The range is outside the networks discovery may scan "
            "(RACKSMITH_SCAN_ALLOWED_NETWORKS).",
        )
    for block, what in SPECIAL_BLOCKS:
        if _overlaps(address_range, block) and not any(
            network.version == block.version and network.subnet_of(block)  # type: ignore[arg-type]
            for network in holders
        ):
            field = first_field if address_range.first in block else last_field
            raise RangeError(
                field,
                f"The range includes {what} addresses ({block}), which hold no BMCs; discovery "
                f"scans them only if RACKSMITH_SCAN_ALLOWED_NETWORKS names a network inside "
                f"{block}.",
            )
