"""A jobs worker killed with SIGKILL — between any two steps, or while a BMC holds its POST —
leaves jobs that the next worker resumes from their rows: every job completes, and each BMC
received exactly one POST per planned reset (the lab counts them), so no effect was repeated."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, func, select

from bmclab import Lab
from shared.core.settings import Settings
from shared.models import Job
from shared.platform.natsserver import EmbeddedNatsServer
from shared.platform.runtime import Runtime
from tests.conftest import own_nats_user
from tests.job_helpers import Worker, power_lab, register_lab, start_job, system, wait_for_job

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]


@pytest.fixture
async def worker(
    settings: Settings,
    tmp_path: Path,
    lab: Lab,
    runtime: Runtime,
    nats_server: EmbeddedNatsServer,
) -> AsyncIterator[Worker]:
    # As deployed: the worker connects as its component's own NATS user.
    running = Worker(settings, tmp_path, lab, runtime, own_nats_user(nats_server, "jobs"))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with power_lab(204, 8, 1.0) as running:
        yield running


async def _ticks(runtime: Runtime, ids: list[int]) -> int:
    async with runtime.db.session() as session:
        return int(
            (await session.exec(select(func.sum(Job.ticks)).where(col(Job.id).in_(ids)))).one() or 0
        )


async def _all_done(client: httpx.AsyncClient, headers: dict[str, str], ids: list[int]) -> bool:
    states = [
        (await client.get(f"/api/job/{job_id}/", headers=headers)).json()["state"] for job_id in ids
    ]
    return all(s in ("completed", "failed", "cancelled") for s in states)


async def test_sigkill_between_steps_resumes_with_one_post_per_step(
    client: httpx.AsyncClient, admin_headers: dict[str, str], worker: Worker
) -> None:
    lab, runtime = worker.lab, worker.runtime
    # iLO: power_cycle is ForceOff then On; AMI: graceful_restart is GracefulShutdown then On;
    # iDRAC: restart is one ForceRestart, confirmed by a new boot.
    cases = {"hpe": ("power_cycle", ["ForceOff", "On"])}
    cases["supermicro"] = ("graceful_restart", ["GracefulShutdown", "On"])
    cases["dell"] = ("restart", ["ForceRestart"])
    entries = [next(e for e in lab.manifest if e.flavour == f) for f in cases]
    servers = await register_lab(runtime, lab, entries=entries)
    await worker.start()
    jobs = {}
    for entry in entries:
        action, _ = cases[entry.flavour]
        server = servers[entry.address]
        job = await start_job(client, admin_headers, server.id or 0, "power", {"action": action})
        jobs[entry.address] = job["id"]
    ids = list(jobs.values())
    kills = 0
    async with asyncio.timeout(240):
        while not await _all_done(client, admin_headers, ids):
            seen = await _ticks(runtime, ids)
            while await _ticks(runtime, ids) == seen:  # a step was taken and committed
                if await _all_done(client, admin_headers, ids):
                    break
                await asyncio.sleep(0.02)
            else:
                await worker.kill()
                kills += 1
                await worker.start()
    # Each worker's handler slots take the three jobs' ticks side by side, so one lifetime may
    # see several steps: what matters is that the jobs crossed kills, and the POSTs below.
    assert kills >= 2, "the workers were killed between steps"
    for entry in entries:
        job = await wait_for_job(client, admin_headers, jobs[entry.address])
        assert job["state"] == "completed", (entry.flavour, job)
        _, planned = cases[entry.flavour]
        counters = lab.counters(entry.address)
        target = system(lab, entry.address)["Actions"]["#ComputerSystem.Reset"]["target"]
        # Exactly one POST per step (Dell's 409s on an early On excepted: refused, not applied).
        assert counters["resets_applied"] == dict(Counter(planned)), entry.flavour
        if entry.flavour != "dell":
            assert counters["posts"] == {target: len(planned)}, entry.flavour
        assert system(lab, entry.address)["PowerState"] == "On"


async def test_sigkill_while_the_bmc_holds_the_post_repeats_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str], worker: Worker
) -> None:
    """The BMC applies the ForceOff and does not answer; the worker is killed while it waits.
    The next worker finds the intent without a result, reads PowerState, and completes."""
    lab, runtime = worker.lab, worker.runtime
    entry = [e for e in lab.manifest if e.flavour == "openbmc"][-1]
    (server,) = (await register_lab(runtime, lab, entries=[entry])).values()
    bmc = lab.bmc(entry.address)
    bmc.set_fault("hang_after_apply:ForceOff")
    await worker.start()
    job = await start_job(client, admin_headers, server.id or 0, "power", {"action": "off"})
    async with asyncio.timeout(60):
        while bmc.counters.dropped == 0:
            await asyncio.sleep(0.02)
    await worker.kill()
    await worker.start()
    done = await wait_for_job(client, admin_headers, job["id"], timeout=90)
    assert done["state"] == "completed", done
    counters = lab.counters(entry.address)
    assert counters["reset_types"] == {"ForceOff": 1}
    assert counters["resets_applied"] == {"ForceOff": 1}
    assert any("was not recorded (the worker stopped)" in m["text"] for m in done["messages"])
    assert system(lab, entry.address)["PowerState"] == "Off"
