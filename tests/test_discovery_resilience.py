"""A scanner replica killed with SIGKILL mid-scan loses nothing: its chunks are redelivered to
the surviving replica, every BMC is found exactly once, and the range ends ``ready`` with the
right counts."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from tests.conftest import worker_env
from tests.discovery_helpers import nodes_of_range, redfish_addresses
from tests.lab_net import LAB_NET
from tests.processes import spawn_worker

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]


async def start_scanner(settings: Settings, log: Path) -> asyncio.subprocess.Process:
    env = worker_env(settings) | {
        "RACKSMITH_SCAN_CHUNK_SIZE": "4",
        "RACKSMITH_SCAN_PROBE_TIMEOUT_S": "5",
        "RACKSMITH_SCAN_PROGRESS_INTERVAL_S": "0.3",
    }
    return await spawn_worker("scanner", env, log)


@pytest.fixture
async def slow_lab() -> AsyncIterator[Lab]:
    # Every fourth BMC hangs, so chunks take a probe timeout each: slow enough to kill mid-scan.
    faults = ",".join(f"hang@{i}" for i in range(0, 40, 4))
    config = LabConfig(
        count=40, network=f"{LAB_NET}.160.0/24", latency="50", faults=faults, seed=11
    )
    async with Lab(config) as lab:
        yield lab


async def test_sigkill_of_one_scanner_loses_and_duplicates_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    slow_lab: Lab,
    tmp_path: Path,
) -> None:
    # The victim alone takes every chunk; chunks holding a hanging BMC need the 5 s probe timeout,
    # so it still has work in hand when the survivor has joined and the victim is killed.
    victim = await start_scanner(settings, tmp_path / "victim.log")
    survivor: asyncio.subprocess.Process | None = None
    try:
        scan_range = (
            await client.post(
                "/api/node_discovery/scan_range/",
                json={
                    "name": "kill test",
                    "ip_from": f"{LAB_NET}.160.1",
                    "ip_to": f"{LAB_NET}.160.64",
                    "ports": [8443],
                },
                headers=admin_headers,
            )
        ).json()
        url = f"/api/node_discovery/scan_range/{scan_range['id']}/"
        started = await client.post(
            "/api/node_discovery/run_scan/",
            json={"scan_ranges": [scan_range["id"]]},
            headers=admin_headers,
        )
        assert started.status_code == 202
        survivor = await start_scanner(settings, tmp_path / "survivor.log")
        await asyncio.sleep(1.0)  # the victim is mid-chunk
        mid = (await client.get(url, headers=admin_headers)).json()
        assert mid["status"] == "scanning", "the scan finished before the kill; make it slower"
        victim.send_signal(signal.SIGKILL)
        await victim.wait()

        async with asyncio.timeout(120):
            while (done := (await client.get(url, headers=admin_headers)).json())[
                "status"
            ] == "scanning":
                await asyncio.sleep(0.3)
    finally:
        for process in (victim, survivor):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()

    # The kill really interrupted work: the survivor finished chunks on their second delivery.
    assert '"delivery": 2' in (tmp_path / "survivor.log").read_text()
    expected = redfish_addresses(slow_lab) & {f"{LAB_NET}.160.{i}" for i in range(1, 65)}
    assert done["status"] == "ready", done
    assert done["addresses_scanned"] == done["addresses_total"] == 64
    assert done["nodes_found"] == len(expected)
    nodes = await nodes_of_range(client, admin_headers, scan_range["id"])
    assert sorted(n["ip"] for n in nodes) == sorted(expected)
