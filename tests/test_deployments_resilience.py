"""A jobs worker killed with SIGKILL while the BMC holds its InsertMedia: the next worker finds
the intent without a result, reads the slot — the image is mounted — and goes on without a
second insert; the deployment completes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bmclab import Lab
from shared.core.settings import Settings
from shared.platform.natsserver import EmbeddedNatsServer
from shared.platform.runtime import Runtime
from tests.conftest import own_nats_user
from tests.deployment_helpers import deploy_world, install_lab_config
from tests.job_helpers import Worker, register_lab, system, wait_for_job

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(install_lab_config(4, 219)) as running:
        yield running


async def test_sigkill_while_the_bmc_holds_the_insert_inserts_once(
    lab: Lab,
    runtime: Runtime,
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
) -> None:
    entry = next(e for e in lab.manifest if e.flavour == "dell")
    (server,) = (await register_lab(runtime, lab, entries=[entry])).values()
    bmc = lab.bmc(entry.address)
    async with deploy_world(runtime, client, admin_headers, "resilient-1.0.iso") as world:
        env = {
            "RACKSMITH_ARTIFACT_DIR": str(settings.effective_artifact_dir),
            "RACKSMITH_ARTIFACT_URL": world.artifact_url,
            "RACKSMITH_CALL_HOME_URL": world.call_home_url,
        }
        worker = Worker(settings, tmp_path, lab, runtime, own_nats_user(nats_server, "jobs"), env)
        bmc.set_fault("hang_after_apply:InsertMedia")
        try:
            await worker.start()
            response = await client.post(
                "/api/deployment/",
                json={"servers": [server.id], "os": world.image_id},
                headers=admin_headers,
            )
            assert response.status_code == 202, response.text
            (job,) = response.json()["jobs"]
            async with asyncio.timeout(60):
                while bmc.counters.dropped == 0:
                    await asyncio.sleep(0.02)
            await worker.kill()
            await worker.start()
            done = await wait_for_job(client, admin_headers, job["id"], timeout=120)
        finally:
            bmc.clear_fault()
            await worker.stop()
    assert done["state"] == "completed", done["messages"]
    # The image once, the seed once: the resumed step saw the image mounted.
    assert bmc.counters.media_inserts == 2
    assert any("holds the image" in m["text"] for m in done["messages"])
    assert bmc.counters.calls_home == 1
    assert system(lab, entry.address)["BootProgress"]["LastState"] == "OSRunning"
