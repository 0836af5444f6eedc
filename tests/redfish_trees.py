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


def _smart_array(store: ResourceStore, body: dict[str, Any]) -> dict[str, Any]:
    links = body.get("Links") or {}
    mib = 1024 * 1024
    return {
        "odata_id": body["@odata.id"],
        "source": "SmartStorage",
        "controllers": 1,
        "controller_serials": [_serial(body)],
        "drives": [
            (d["@odata.id"], _serial(d), _clean(d.get("Model")), d["CapacityMiB"] * mib)
            for d in _members(store, _ref(links, "PhysicalDrives")) or []
        ],
        "volumes": [
            (v["@odata.id"], v["CapacityMiB"] * mib)
            for v in _members(store, _ref(links, "LogicalDrives")) or []
        ],
    }


def _storage_entries(store: ResourceStore, system: dict[str, Any]) -> list[dict[str, Any]]:
    storages = _members(store, _ref(system, "Storage"))
    if storages:
        return [_storage(store, s) for s in storages]
    simple = _members(store, _ref(system, "SimpleStorage"))
    if simple:
        return [_simple_storage(s) for s in simple]
    smart = _get(
        store, _ref(((system.get("Oem") or {}).get("Hpe") or {}).get("Links") or {}, "SmartStorage")
    )
    arrays = _members(store, _ref(smart.get("Links") or {}, "ArrayControllers")) if smart else None
    return [_smart_array(store, a) for a in arrays or []]


def _bay_drives(
    store: ResourceStore, system: dict[str, Any], storage: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Drives in the system's chassis bays that no storage entry lists (and are present)."""
    own = set(_refs(system.get("Links") or {}, "Chassis"))
    listed = {d[0] for s in storage for d in s["drives"]}
    serials = {d[1] for s in storage for d in s["drives"] if d[1]}
    entries = []
    for chassis in _members(store, _ref(store.body("/redfish/v1"), "Chassis")) or []:
        links = chassis.get("Links") or {}
        if not (
            chassis["@odata.id"] in own
            or _ref(links, "ContainedBy") in own
            or system["@odata.id"] in _refs(links, "ComputerSystems")
        ):
            continue
        drives = [
            _drive(d, d["@odata.id"])
            for d in _members(store, _ref(chassis, "Drives")) or []
            if (d.get("Status") or {}).get("State") != "Absent"
        ]
        loose = [d for d in drives if d[0] not in listed and d[1] not in serials]
        if loose:
            entries.append(
                {
                    "odata_id": _ref(chassis, "Drives"),
                    "source": "Chassis",
                    "controllers": 0,
                    "controller_serials": [],
                    "drives": loose,
                    "volumes": [],
                }
            )
    return entries


def expected_inventory(store: ResourceStore, system_path: str) -> dict[str, Any]:
    """The inventory the served tree describes, in the shape of `actual_inventory`."""
    system = store.body(system_path)
    storage = _storage_entries(store, system)
    seen: set[str] = set()
    for entry in storage:  # a volume two Storage resources list belongs to the first
        entry["volumes"] = [v for v in entry["volumes"] if v[0] not in seen]
        seen.update(v[0] for v in entry["volumes"])
    storage += _bay_drives(store, system, storage)
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
