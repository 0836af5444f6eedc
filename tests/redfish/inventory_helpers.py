"""Helpers for the inventory tests (imported by name: tests/redfish is not a package).

The independent reading of a served tree (`expected_inventory`) lives in tests/redfish_trees.py,
shared with the inventory worker's end-to-end tests.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bmclab.latency import Latency
from shared.redfish import Inventory
from tests.redfish_trees import expected_inventory, expected_mac  # noqa: F401  (re-exported)


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
