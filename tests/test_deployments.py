"""Deployments on every lab flavour through the API and a real jobs worker: the image and the
seed mounted the vendor's way (or the seed beside the image), a one-time CD boot, the installer's
call-home, and the finalisation — media ejected, boot from disk, the deployed OS running. Faults:
a ghost mount is caught and inserted again; an unreachable image fails ``image_unreachable``; an
installer that never finishes fails ``installer_timeout`` at its deadline, cleaned up; a cancel
cleans up the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from bmclab import Lab
from shared.core.settings import Settings
from shared.models import Artifact, ArtifactGrant, ArtifactKind, Server
from shared.models.deployments import CallHome
from shared.platform.runtime import Runtime
from tests.deployment_helpers import DeployWorld, deploy_world, install_lab_config
from tests.job_helpers import fast, jobs_worker, register_lab, system, wait_for_job

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]

FLAVOURS = ("dell", "hpe", "supermicro", "openbmc")


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(install_lab_config(12, 218)) as running:
        yield running


@dataclass
class Fleet:
    lab: Lab
    world: DeployWorld
    servers: dict[str, Server]
    client: httpx.AsyncClient
    headers: dict[str, str]
    runtime: Runtime
    used: set[str]

    def take(self, flavour: str) -> tuple[str, Server]:
        """A server of ``flavour`` no earlier test deployed to."""
        for address, server in self.servers.items():
            entry = next(e for e in self.lab.manifest if e.address == address)
            if entry.flavour == flavour and address not in self.used:
                self.used.add(address)
                return address, server
        raise AssertionError(f"no {flavour} server left")

    async def deploy(self, servers: list[Server], **extra: Any) -> list[dict[str, Any]]:
        body = {"servers": [s.id for s in servers], "os": self.world.image_id} | extra
        response = await self.client.post("/api/deployment/", json=body, headers=self.headers)
        assert response.status_code == 202, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    async def finished(self, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        return await wait_for_job(self.client, self.headers, job["id"], timeout=timeout)

    async def server(self, server: Server) -> dict[str, Any]:
        shown: dict[str, Any] = (
            await self.client.get(f"/api/server/{server.id}/", headers=self.headers)
        ).json()
        return shown


@pytest.fixture(scope="module")
async def fleet(
    lab: Lab,
    runtime: Runtime,
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> AsyncIterator[Fleet]:
    async with deploy_world(runtime, client, admin_headers, "testlinux-1.0.iso") as world:
        servers = await register_lab(runtime, lab)
        worker_settings = fast(settings, job_cleanup_timeout_s=20.0, **world.settings())
        async with jobs_worker(worker_settings):
            yield Fleet(lab, world, servers, client, admin_headers, runtime, set())


def _slots(lab: Lab, address: str) -> list[dict[str, Any]]:
    store = lab.bmc(address).store
    return [
        store.body(path)
        for path in store
        if "/VirtualMedia/" in path and "Inserted" in store.body(path)
    ]


def _cleaned_up(lab: Lab, address: str) -> None:
    assert not any(slot["Inserted"] for slot in _slots(lab, address))
    boot = system(lab, address)["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == (
        "None",
        "Disabled",
    )


async def _seeds(fleet: Fleet) -> int:
    async with fleet.runtime.db.session() as session:
        found = await session.exec(select(Artifact).where(Artifact.kind == ArtifactKind.seed))
        return len(found.all())


async def test_deploy_to_every_flavour(fleet: Fleet) -> None:
    chosen = [fleet.take(flavour) for flavour in FLAVOURS]
    seeds_before = await _seeds(fleet)
    jobs = await fleet.deploy(
        [server for _, server in chosen],
        config={"ssh_authorized_keys": ["ssh-ed25519 AAAAC3Nz test@racksmith"]},
    )
    assert [job["kind"] for job in jobs] == ["deployment"] * len(chosen)
    shown = await fleet.server(chosen[0][1])
    assert shown["deployment_status"] == "deploying"
    assert shown["locked_by"] == f"job/{jobs[0]['id']}"
    done = await asyncio.gather(*(fleet.finished(job) for job in jobs))
    for (address, server), job in zip(chosen, done, strict=True):
        flavour = next(e.flavour for e in fleet.lab.manifest if e.address == address)
        assert job["state"] == "completed", (flavour, job["error"], job["messages"])
        counters = fleet.lab.counters(address)
        assert counters["calls_home"] == 1 and counters["seeds_read"] == 1, flavour
        assert counters["deployed_os"] == fleet.world.image_filename
        # The image once (and the seed once where a second medium is allowed), no more.
        assert counters["media_inserts"] == (1 if flavour == "supermicro" else 2), flavour
        assert counters["media_bytes"] >= fleet.world.image_size
        running = system(fleet.lab, address)
        assert running["PowerState"] == "On"
        assert running["BootProgress"]["LastState"] == "OSRunning"
        assert running["HostName"] == server.name
        assert not any(slot["Inserted"] for slot in _slots(fleet.lab, address)), flavour
        if flavour == "supermicro":
            assert any("beside the image" in m["text"] for m in job["messages"])
        shown = await fleet.server(server)
        assert (shown["os"], shown["deployment_status"]) == (fleet.world.image_id, "deployed")
        assert shown["locked_by"] is None
    listed = await fleet.client.get(
        "/api/server/",
        params={"deployment_status": "deployed", "os": fleet.world.image_id},
        headers=fleet.headers,
    )
    assert {s["id"] for s in listed.json()["results"]} >= {s.id for _, s in chosen}
    async with fleet.runtime.db.session() as session:
        # The grants ended with the jobs, and the seeds are gone.
        purposes = [f"deployment job {job['id']}" for job in done]
        grants = (
            await session.exec(
                select(ArtifactGrant).where(col(ArtifactGrant.purpose).in_(purposes))
            )
        ).all()
        assert grants and all(g.revoked_at is not None for g in grants)
        assert sum(g.bytes_served for g in grants) >= len(chosen) * fleet.world.image_size
        ids = [job["id"] for job in done]
        calls = (await session.exec(select(CallHome).where(col(CallHome.job_id).in_(ids)))).all()
        assert calls == []
    assert await _seeds(fleet) == seeds_before


async def test_ghost_mount_is_caught_and_inserted_again(fleet: Fleet) -> None:
    address, server = fleet.take("hpe")
    bmc = fleet.lab.bmc(address)
    bmc.set_fault("ghost_mount:1")
    try:
        (job,) = await fleet.deploy([server])
        done = await fleet.finished(job)
    finally:
        bmc.clear_fault()
    assert done["state"] == "completed", done["messages"]
    assert bmc.counters.ghost_mounts == 1 and bmc.counters.media_inserts == 3
    assert any("ghost mount" in m["text"] for m in done["messages"])


async def test_unreachable_image_fails_and_cleans_up(fleet: Fleet) -> None:
    address, server = fleet.take("dell")
    bmc = fleet.lab.bmc(address)
    bmc.set_fault("image_unreachable")
    try:
        (job,) = await fleet.deploy([server])
        done = await fleet.finished(job)
    finally:
        bmc.clear_fault()
    assert (done["state"], done["error_code"]) == ("failed", "image_unreachable"), done
    _cleaned_up(fleet.lab, address)
    shown = await fleet.server(server)
    assert (shown["deployment_status"], shown["os"]) == ("failed", None)
    assert bmc.counters.resets_applied.total() == 0  # never power-cycled


async def test_installer_timeout_fails_at_the_deadline_cleaned_up(fleet: Fleet) -> None:
    address, server = fleet.take("supermicro")
    bmc = fleet.lab.bmc(address)
    bmc.set_fault("installer_hang")
    try:
        (job,) = await fleet.deploy([server], timeout=3)
        done = await fleet.finished(job)
    finally:
        bmc.clear_fault()
    assert (done["state"], done["error_code"]) == ("failed", "installer_timeout"), done
    assert bmc.counters.installer_stuck == 1
    _cleaned_up(fleet.lab, address)
    assert system(fleet.lab, address)["PowerState"] == "Off"
    assert (await fleet.server(server))["deployment_status"] == "failed"


async def test_cancel_cleans_up(fleet: Fleet) -> None:
    address, server = fleet.take("openbmc")
    bmc = fleet.lab.bmc(address)
    bmc.set_fault("installer_hang")
    try:
        (job,) = await fleet.deploy([server])
        await wait_for_job(fleet.client, fleet.headers, job["id"], states={"waiting"})
        while (await fleet.client.get(f"/api/job/{job['id']}/", headers=fleet.headers)).json()[
            "step"
        ] != "await_install":
            await asyncio.sleep(0.1)
        removed = await fleet.client.post(
            "/api/server/remove_from_pool/", json={"servers": [server.id]}, headers=fleet.headers
        )
        assert removed.status_code == 409 and removed.json()["job"] == job["id"]
        cancelled = await fleet.client.post(
            f"/api/job/{job['id']}/cancel/", params={"wait": 30}, headers=fleet.headers
        )
        assert cancelled.status_code == 200, cancelled.text
    finally:
        bmc.clear_fault()
    done = cancelled.json()
    assert done["state"] == "cancelled", done
    assert any("Cleaned up" in m["text"] for m in done["messages"])
    _cleaned_up(fleet.lab, address)
    assert (await fleet.server(server))["deployment_status"] == "cancelled"
    # A retry deploys it after all.
    retried = await fleet.client.post(f"/api/job/{job['id']}/retry/", headers=fleet.headers)
    assert retried.status_code == 202, retried.text
    again = await fleet.finished(retried.json())
    assert again["state"] == "completed", again["messages"]
    assert (await fleet.server(server))["deployment_status"] == "deployed"


async def test_uefi_http_boot_where_the_bmc_offers_it(fleet: Fleet) -> None:
    address, server = fleet.take("hpe")
    (job,) = await fleet.deploy([server], method="uefi_http")
    done = await fleet.finished(job)
    assert done["state"] == "completed", done["messages"]
    counters = fleet.lab.counters(address)
    # The image came over UEFI HTTP; only the seed went in as a medium.
    assert counters["media_inserts"] == 1 and counters["calls_home"] == 1
    assert counters["media_bytes"] >= fleet.world.image_size
    assert any("UefiHttp" in m["text"] for m in done["messages"])
    # OpenBMC offers no UefiHttp: refused before anything is changed.
    other, plain = fleet.take("openbmc")
    (refused,) = await fleet.deploy([plain], method="uefi_http")
    ended = await fleet.finished(refused)
    assert (ended["state"], ended["error_code"]) == ("failed", "unsupported_boot_target")
    assert fleet.lab.counters(other)["media_inserts"] == 0


async def test_bad_requests_create_nothing(fleet: Fleet) -> None:
    _, server = fleet.take("dell")
    for body, field in (
        ({"servers": [server.id], "os": 999_999}, "OS image"),
        ({"servers": [server.id], "os": fleet.world.image_id, "method": "pxe"}, "method"),
        ({"servers": [], "os": fleet.world.image_id}, "servers"),
    ):
        response = await fleet.client.post("/api/deployment/", json=body, headers=fleet.headers)
        assert response.status_code == 400, response.text
        assert field in response.text
    unknown = await fleet.client.post("/api/deployment/call_home/not-a-token/", data={"a": "b"})
    assert unknown.status_code == 404


async def test_openapi_lists_the_deployment_paths(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    schema = (await client.get("/api/schema/?format=json")).json()
    create = schema["paths"]["/api/deployment/"]["post"]
    assert create["operationId"] == "create_deployment"
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/DeploymentRequest")
    accepted = create["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted["$ref"].endswith("/BulkJobs")
    assert {"400", "409", "413"} <= set(create["responses"])
    home = schema["paths"]["/api/deployment/call_home/{token}/"]["post"]
    assert "application/x-www-form-urlencoded" in home["requestBody"]["content"]
    ok = home["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/CallHomeAccepted") and "404" in home["responses"]
    server = schema["components"]["schemas"]["ServerPublic"]["properties"]
    assert {"os", "deployment_status"} <= set(server)
    # The guide's image listing.
    listed = await client.get("/api/os/", params={"arch": "x86_64"}, headers=admin_headers)
    assert listed.status_code == 200
    assert all(image["arch"] == "x86_64" for image in listed.json()["results"])
