"""An independent reading of the Redfish tree a lab BMC serves, for tests to compare against.

`expected_inventory` walks the served JSON with its own, deliberately simple code (not the
client's), so a test compares two independent readings of the same tree. Used by the Redfish
client's tests and by the inventory worker's end-to-end tests.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from bmclab.tree import ResourceStore

# Firmware filler values seen in the lab's flavours and the mockups' serial numbers, kept
# explicit so that the test does not reuse the code under test.
KNOWN_PLACEHOLDERS = {"Default string", "To Be Filled By O.E.M.", "...................."}


def _get(store: ResourceStore, path: str | None) -> dict[str, Any] | None:
    resource = store.get(path) if path else None
    if resource is None or ("error" in resource.body and "@odata.id" not in resource.body):
        return None
    return resource.body


def _ref(body: dict[str, Any], key: str) -> str | None:
    item = body.get(key)
    ref = item.get("@odata.id") if isinstance(item, dict) else None
    return ref.split("#")[0] if isinstance(ref, str) else None


def _refs(body: dict[str, Any], key: str) -> list[str]:
    items = body.get(key)
    found = [i["@odata.id"].split("#")[0] for i in items or [] if isinstance(i, dict)]
    return list(dict.fromkeys(found))


def _members(store: ResourceStore, link: str | None) -> list[dict[str, Any]] | None:
    collection = _get(store, link)
    if collection is None:
        return None
    bodies = (_get(store, path) for path in _refs(collection, "Members"))
    return [body for body in bodies if body is not None]


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip() or None
    return value


def _serial(body: dict[str, Any]) -> str | None:
    value = _clean(body.get("SerialNumber"))
    return None if value in KNOWN_PLACEHOLDERS else value


def _int(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def expected_mac(value: Any) -> str | None:
    digits = re.sub(r"[^0-9a-fA-F]", "", value or "").lower()
    if len(digits) != 12 or digits == "0" * 12:
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _ips(body: dict[str, Any], key: str, unset: str) -> tuple[str, ...]:
    found = [_clean(a.get("Address")) for a in body.get(key) or [] if isinstance(a, dict)]
    return tuple(dict.fromkeys(a for a in found if a and a != unset))


def _drive(body: dict[str, Any], odata_id: str) -> tuple[Any, ...]:
    return (odata_id, _serial(body), _clean(body.get("Model")), _int(body.get("CapacityBytes")))


def _storage(store: ResourceStore, body: dict[str, Any]) -> dict[str, Any]:
    drives = (_get(store, path) for path in _refs(body, "Drives"))
    controllers = _members(store, _ref(body, "Controllers")) or body.get("StorageControllers")
    return {
        "odata_id": body["@odata.id"],
        "source": "Storage",
        "controllers": len(controllers or []),
        "controller_serials": [_serial(c) for c in controllers or []],
        "drives": [_drive(d, d["@odata.id"]) for d in drives if d is not None],
        "volumes": [
            (v["@odata.id"], _int(v.get("CapacityBytes")))
            for v in _members(store, _ref(body, "Volumes")) or []
        ],
    }


def _simple_storage(body: dict[str, Any]) -> dict[str, Any]:
    path = body["@odata.id"]
    devices = body.get("Devices") or []
    return {
        "odata_id": path,
        "source": "SimpleStorage",
        "controllers": 1,
        "controller_serials": [_serial(body)],
        "drives": [_drive(d, f"{path}#/Devices/{i}") for i, d in enumerate(devices)],
        "volumes": [],
    }


def expected_inventory(store: ResourceStore, system_path: str) -> dict[str, Any]:
    """The inventory the served tree describes, in the shape of `actual_inventory`."""
    system = store.body(system_path)
    storages = _members(store, _ref(system, "Storage"))
    if storages:
        storage = [_storage(store, s) for s in storages]
    else:
        storage = [_simple_storage(s) for s in _members(store, _ref(system, "SimpleStorage")) or []]
    firmware: list[dict[str, Any]] = []
    service = _get(store, _ref(store.body("/redfish/v1"), "UpdateService"))
    for key in ("FirmwareInventory", "SoftwareInventory"):
        found = _members(store, _ref(service, key)) if service else None
        if found is not None:
            firmware = found
            break
    nics = _members(store, _ref(system, "EthernetInterfaces")) or []
    macs = [
        expected_mac(n.get("MACAddress")) or expected_mac(n.get("PermanentMACAddress"))
        for n in nics
    ]
    return {
        "processors": [
            (p["@odata.id"], _clean(p.get("Model")), _int(p.get("TotalCores")))
            for p in _members(store, _ref(system, "Processors")) or []
        ],
        "memory": [
            (m["@odata.id"], _serial(m), _int(m.get("CapacityMiB")))
            for m in _members(store, _ref(system, "Memory")) or []
        ],
        "nics": [
            (
                n["@odata.id"],
                mac,
                _ips(n, "IPv4Addresses", "0.0.0.0"),  # noqa: S104 - a value, not a bind
                _ips(n, "IPv6Addresses", "::"),
            )
            for n, mac in zip(nics, macs, strict=True)
        ],
        "storage": storage,
        "firmware": [(f["@odata.id"], _clean(f.get("Version"))) for f in firmware],
        "duplicate_macs": {m for m, n in Counter(macs).items() if m and n > 1},
    }
