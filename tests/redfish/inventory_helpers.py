"""Helpers for the inventory tests (imported by name: tests/redfish is not a package).

`expected_inventory` walks the JSON a lab BMC serves with its own, deliberately simple code (not
the client's), so the tests compare two independent readings of the same tree.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bmclab.latency import Latency
from bmclab.tree import ResourceStore
from shared.redfish import Inventory

# Firmware filler values seen in the lab's flavours and the mockups' serial numbers, kept
# explicit so that the test does not reuse the code under test.
KNOWN_PLACEHOLDERS = {"Default string", "To Be Filled By O.E.M.", "...................."}


def mockups_dir() -> Path:
    override = os.environ.get("RACKSMITH_BMC_MOCKUPS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "bmc-mockups"


def mockup_dirs() -> list[Path]:
    """The recorded mockups, read in place from ../shared/bmc-mockups (never copied)."""
    root = mockups_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "redfish" / "v1").is_dir())


# -- reading the served tree independently ---------------------------------------------------


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


def actual_inventory(inventory: Inventory) -> dict[str, Any]:
    return {
        "processors": [(p.odata_id, p.model, p.total_cores) for p in inventory.processors],
        "memory": [(m.odata_id, m.serial_number, m.capacity_mib) for m in inventory.memory],
        "nics": [
            (n.odata_id, n.mac_address, n.ipv4_addresses, n.ipv6_addresses)
            for n in inventory.ethernet_interfaces
        ],
        "storage": [
            {
                "odata_id": s.odata_id,
                "source": s.source,
                "controllers": len(s.controllers),
                "controller_serials": [c.serial_number for c in s.controllers],
                "drives": [
                    (d.odata_id, d.serial_number, d.model, d.capacity_bytes) for d in s.drives
                ],
                "volumes": [(v.odata_id, v.capacity_bytes) for v in s.volumes],
            }
            for s in inventory.storage
        ],
        "firmware": [(f.odata_id, f.version) for f in inventory.firmware],
        "duplicate_macs": set(inventory.duplicate_macs),
    }


# -- request-order instrumentation -----------------------------------------------------------


@dataclass
class RequestRounds:
    """Which sequential round each request a lab BMC serves belongs to.

    A request's round is one more than the highest round among the requests that had already
    been answered when it started: requests sent together share a round, a request that had to
    wait for an answer starts a new one. So a client that walks a tree level by level takes
    about (depth) rounds, and one that sends each GET after the previous takes one per GET.
    """

    rounds: list[int] = field(default_factory=list)
    _open: dict[asyncio.Task[Any] | None, int] = field(default_factory=dict)
    _answered: int = 0

    def started(self) -> None:
        round_ = self._answered + 1
        self.rounds.append(round_)
        self._open[asyncio.current_task()] = round_

    def finished(self) -> None:
        round_ = self._open.pop(asyncio.current_task(), None)
        if round_ is not None:
            self._answered = max(self._answered, round_)

    @property
    def depth(self) -> int:
        return max(self.rounds, default=0)


@dataclass(frozen=True)
class RecordingLatency(Latency):
    """The lab's latency, telling `RequestRounds` when a request starts being served.

    The lab samples the latency right after a request gets its in-flight slot, in the task
    that later releases the slot (see `RecordingSemaphore`).
    """

    recorder: RequestRounds = field(default_factory=RequestRounds)

    def sample(self, rng: Any) -> float:
        self.recorder.started()
        return super().sample(rng)


class RecordingSemaphore(asyncio.Semaphore):
    """A lab BMC's in-flight slots: tells `RequestRounds` when a request has been answered,
    records the peak number of requests served at once, and can turn the BMC busy after a
    given number of requests."""

    def __init__(
        self,
        value: int,
        recorder: RequestRounds | None = None,
        *,
        on_request: tuple[int, Any] | None = None,
    ) -> None:
        super().__init__(value)
        self.recorder = recorder
        self.on_request = on_request
        self.acquired = 0
        self.current = 0
        self.peak = 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.acquired += 1
        self.current += 1
        self.peak = max(self.peak, self.current)
        if self.on_request is not None and self.acquired == self.on_request[0]:
            self.on_request[1]()
        return True

    def release(self) -> None:
        self.current -= 1
        if self.recorder is not None:
            self.recorder.finished()
        super().release()
