"""Killing a registrar replica mid-batch loses no node: each ends `registered` exactly once."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.platform.runtime import Runtime
from tests.conftest import worker_env
from tests.discovery_helpers import create_profile, discover, events, scanner
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]

RACKSMITH = str(Path(sys.executable).with_name("racksmith"))
COUNT = 16


async def start_registrar(settings: Settings, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        RACKSMITH,
        "worker",
        "registrar",
        env=worker_env(settings),
        stdout=log.open("w"),
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_sigkill_of_one_registrar_mid_batch(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    # Slow BMCs (a second per request) keep registrations in flight long enough to kill one.
    config = LabConfig(
        count=COUNT, network=f"{LAB_NET}.190.0/24", latency="1000", password="calvin"
    )
    async with Lab(config) as lab:
        async with scanner(settings.model_copy(update={"scan_probe_timeout_s": 5.0})):
            done = await discover(
                client,
                admin_headers,
                "kill registrar",
                f"{LAB_NET}.190.1",
                f"{LAB_NET}.190.{COUNT}",
            )
        nodes = (
            await client.get(f"/api/node/?scan_range={done['id']}", headers=admin_headers)
        ).json()["results"]
        assert len(nodes) == COUNT
        profile = await create_profile(client, admin_headers, [("root", "calvin")])

        # The victim takes the whole batch (one fetch); the survivor joins while it works.
        victim = await start_registrar(settings, tmp_path / "victim.log")
        survivor: asyncio.subprocess.Process | None = None
        try:
            await asyncio.sleep(1.5)  # subscribed
            accepted = await client.post(
                "/api/node/register/",
                json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
                headers=admin_headers,
                params={"wait": 0},
            )
            assert accepted.status_code == 202
            async with asyncio.timeout(30):
                while sum(lab.bmc(e.address).total_logins for e in lab.manifest) == 0:
                    await asyncio.sleep(0.05)
            survivor = await start_registrar(settings, tmp_path / "survivor.log")
            await asyncio.sleep(1.0)
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            async with asyncio.timeout(120):
                while True:
                    listed = (
                        await client.get(
                            f"/api/node/?scan_range={done['id']}", headers=admin_headers
                        )
                    ).json()["results"]
                    if all(n["status"] != "registering" for n in listed):
                        break
                    await asyncio.sleep(0.5)
        finally:
            for process in (victim, survivor):
                if process is not None and process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    await process.wait()
        for entry in lab.manifest:
            assert lab.bmc(entry.address).max_sessions <= config.session_limit

    assert {n["status"] for n in listed} == {"registered"}, [n["error"] for n in listed]
    assert '"delivery": 2' in (tmp_path / "survivor.log").read_text(), "the kill interrupted work"
    ids = {n["id"] for n in nodes}
    outcomes = Counter(
        e["data"]["id"]
        for e in await events(runtime, "racksmith.evt.node.*.registered")
        if e["data"]["id"] in ids
    )
    assert outcomes == dict.fromkeys(ids, 1)
    servers = Counter(
        e["data"]["node"]
        for e in await events(runtime, "racksmith.evt.server.*.created")
        if e["data"]["node"] in ids
    )
    assert servers == dict.fromkeys(ids, 1)


async def test_a_bmc_that_drops_the_login_connection_still_registers(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    """A BMC emulator written by others drops the connection on POST .../Sessions; sushy reads
    it with HTTP Basic, and so does registration (and the inventory after it)."""
    config = LabConfig(
        count=2, network=f"{LAB_NET}.191.0/24", faults="sessiondrop@0", password="calvin"
    )
    async with Lab(config) as lab, scanner(settings, ("scanner", "registrar", "inventory")):
        done = await discover(
            client, admin_headers, "session drop", f"{LAB_NET}.191.1", f"{LAB_NET}.191.2"
        )
        nodes = (
            await client.get(f"/api/node/?scan_range={done['id']}", headers=admin_headers)
        ).json()["results"]
        profile = await create_profile(client, admin_headers, [("root", "calvin")])
        registered = await client.post(
            "/api/node/register/",
            json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
            headers=admin_headers,
            params={"wait": 60},
        )
        assert registered.status_code == 200, registered.text
        results = registered.json()["results"]
        assert [r["status"] for r in results] == ["registered", "registered"], results
        dropping = lab.bmc(lab.manifest[0].address)
        assert (dropping.total_logins, dropping.open_sessions) == (0, 0)
        assert lab.bmc(lab.manifest[1].address).total_logins >= 1
