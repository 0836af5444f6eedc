"""Typed, tolerant views of Redfish resources.

Each resource type is a frozen dataclass with a ``parse(body)`` classmethod. Parsing never fails
on a vendor's shape: missing keys, ``null`` and wrong types become ``None``, strings are cleaned
(`shared.redfish.normalise`), and the untouched body stays available as ``raw`` for vendor
(``Oem``) details. Links are kept as the BMC's own ``@odata.id`` paths (fragment removed); the
session resolves and checks them when they are followed.

To add a resource (Processor, Memory, EthernetInterface, Storage, Drive, Volume,
SoftwareInventory): subclass `Resource`, declare the fields, and build them in ``parse`` with
the accessors below (`value`, `text`, `link`, `links`) and the normalise functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from shared.redfish import normalise

JsonObject = Mapping[str, Any]


def value(body: JsonObject, *keys: str) -> Any:
    """``body[k1][k2]...``, or ``None`` as soon as a level is missing or not an object."""
    current: Any = body
    for key in keys:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def text(body: JsonObject, *keys: str) -> str | None:
    """A trimmed, non-empty string at ``keys``, else ``None``."""
    return normalise.clean_text(value(body, *keys))


def strip_fragment(odata_id: str) -> str:
    """``/redfish/v1/Chassis/1#/PowerSupplies/0`` → ``/redfish/v1/Chassis/1``."""
    return odata_id.split("#", 1)[0]


def odata_id_of(item: Any) -> str | None:
    """The ``@odata.id`` of a link object (``{"@odata.id": ...}``) without fragment."""
    if isinstance(item, Mapping):
        ref = item.get("@odata.id")
        if isinstance(ref, str) and ref.strip():
            return strip_fragment(ref.strip()) or None
    return None


def link(body: JsonObject, *keys: str) -> str | None:
    """The link at ``keys`` (e.g. ``link(system, "Processors")``), or ``None``."""
    return odata_id_of(value(body, *keys))


def links(body: JsonObject, *keys: str) -> list[str]:
    """The links of an array of link objects (``Drives``, ``Members``), de-duplicated in order.

    Duplicates are dropped because they name the same resource (Intel lists one drive 32 times).
    """
    items = value(body, *keys)
    if not isinstance(items, list):
        return []
    found = (odata_id_of(item) for item in items)
    return list(dict.fromkeys(ref for ref in found if ref is not None))


def canonical_path(odata_id: str) -> str:
    """A key for comparing links: no fragment and no trailing slash.

    ``/redfish/v1/Systems/`` and ``/redfish/v1/Systems`` name the same resource.
    """
    path = strip_fragment(odata_id)
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


@dataclass(frozen=True, kw_only=True)
class Resource:
    """Fields every Redfish resource has. ``raw`` is the body as served (not compared)."""

    odata_id: str
    id: str | None
    name: str | None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def common(body: JsonObject, fallback_id: str = "") -> dict[str, Any]:
        """Keyword arguments for the `Resource` fields, for use in subclasses' ``parse``."""
        return {
            "odata_id": odata_id_of(body) or fallback_id,
            "id": text(body, "Id"),
            "name": text(body, "Name"),
            "raw": body,
        }


@dataclass(frozen=True, kw_only=True)
class ServiceRoot(Resource):
    redfish_version: str | None
    uuid: str | None
    vendor: str | None
    product: str | None
    systems: str | None
    sessions: str | None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        vendor = text(body, "Vendor")
        oem = value(body, "Oem")
        if vendor is None and isinstance(oem, Mapping) and oem:
            # Before Redfish 1.5 (and on many BMCs since) the vendor only shows as the Oem key.
            vendor = normalise.clean_text(next(iter(oem)))
        return cls(
            **cls.common(body, "/redfish/v1/"),
            redfish_version=text(body, "RedfishVersion"),
            uuid=normalise.uuid(value(body, "UUID")),
            vendor=vendor,
            product=text(body, "Product"),
            systems=link(body, "Systems"),
            sessions=link(body, "Links", "Sessions"),
        )


@dataclass(frozen=True, kw_only=True)
class ComputerSystem(Resource):
    uuid: str | None
    manufacturer: str | None
    model: str | None
    serial_number: str | None
    sku: str | None
    bios_version: str | None
    power_state: str | None
    health: str | None
    state: str | None
    host_name: str | None
    processors: str | None
    memory: str | None
    ethernet_interfaces: str | None
    storage: str | None
    simple_storage: str | None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        return cls(
            **cls.common(body),
            uuid=normalise.uuid(value(body, "UUID")),
            manufacturer=text(body, "Manufacturer"),
            model=text(body, "Model"),
            serial_number=normalise.placeholder(value(body, "SerialNumber")),
            sku=normalise.placeholder(value(body, "SKU")),
            bios_version=text(body, "BiosVersion"),
            power_state=normalise.power_state(value(body, "PowerState")),
            health=normalise.health(value(body, "Status", "Health")),
            state=text(body, "Status", "State"),
            host_name=text(body, "HostName"),
            processors=link(body, "Processors"),
            memory=link(body, "Memory"),
            ethernet_interfaces=link(body, "EthernetInterfaces"),
            storage=link(body, "Storage"),
            simple_storage=link(body, "SimpleStorage"),
        )
