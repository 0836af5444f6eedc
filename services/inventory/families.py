"""How each resource family of an ``Inventory`` becomes rows, and its content hash.

Resource dataclass fields are named like the table columns on purpose, so the mapping is the
field values minus the Redfish ``Id`` (which the table keeps where it means something, as
``component_id`` for firmware) and the raw body.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import SQLModel

from shared.models import EthernetInterface, FirmwareComponent, MemoryModule, Processor, Storage
from shared.redfish.inventory import Inventory

Row = dict[str, Any]
_NOT_STORED = {"id", "raw"}


def fields_of(resource: Any) -> Row:
    return {
        f.name: getattr(resource, f.name)
        for f in dataclasses.fields(resource)
        if f.name not in _NOT_STORED
    }


def _plain(resource: Any) -> Row:
    """A nested resource as JSON-ready data (tuples to lists), Redfish Id kept."""
    data = {
        f.name: getattr(resource, f.name) for f in dataclasses.fields(resource) if f.name != "raw"
    }
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _processors(inventory: Inventory) -> list[Row]:
    return [fields_of(p) for p in inventory.processors]


def _memory(inventory: Inventory) -> list[Row]:
    return [fields_of(m) for m in inventory.memory]


def _ethernet_interfaces(inventory: Inventory) -> list[Row]:
    rows = []
    for nic in inventory.ethernet_interfaces:
        row = fields_of(nic)
        row["ipv4_addresses"] = list(nic.ipv4_addresses)
        row["ipv6_addresses"] = list(nic.ipv6_addresses)
        row["duplicate_mac"] = nic.mac_address in inventory.duplicate_macs
        rows.append(row)
    return rows


def _storage(inventory: Inventory) -> list[Row]:
    rows = []
    for storage in inventory.storage:
        capacities = [d.capacity_bytes for d in storage.drives if d.capacity_bytes is not None]
        rows.append(
            {
                "odata_id": storage.odata_id,
                "name": storage.name,
                "health": None,
                "state": None,
                "source": storage.source,
                "controllers": [_plain(c) for c in storage.controllers],
                "drives": [_plain(d) for d in storage.drives],
                "volumes": [_plain(v) for v in storage.volumes],
                "drives_count": len(storage.drives),
                "capacity_bytes": sum(capacities) if capacities else None,
            }
        )
    return rows


def _firmware(inventory: Inventory) -> list[Row]:
    return [
        fields_of(f)
        | {"component_id": f.id, "related_items": list(f.related_items), "targets": list(f.targets)}
        for f in inventory.firmware
    ]


@dataclass(frozen=True)
class Family:
    name: str
    table: type[SQLModel]
    rows: Callable[[Inventory], list[Row]]


FAMILIES: tuple[Family, ...] = (
    Family("processors", Processor, _processors),
    Family("memory", MemoryModule, _memory),
    Family("ethernet_interfaces", EthernetInterface, _ethernet_interfaces),
    Family("storages", Storage, _storage),
    Family("firmwares", FirmwareComponent, _firmware),
)


def content_hash(rows: Sequence[Row] | Row) -> str:
    canonical = json.dumps(rows, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
