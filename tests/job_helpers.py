"""Building blocks for job tests: lab BMCs as registered servers, and waiting for jobs."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bmclab import Lab, LabConfig
from bmclab.manifest import ManifestEntry
from shared.core.settings import Settings
from shared.models import AuthProfile, Credential, Node, NodeStatus, Server
from shared.platform.runtime import Runtime
from tests.conftest import worker_env
from tests.discovery_helpers import scanner
from tests.lab_net import LAB_NET
from tests.processes import spawn_worker
from tests.redfish.redfish_helpers import peer_fingerprint

FINAL = {"completed", "failed", "cancelled"}
_serial = itertools.count(1)


async def register_lab(
    runtime: Runtime,
    lab: Lab,
    pool_id: int | None = None,
    entries: list[ManifestEntry] | None = None,
) -> dict[str, Server]:
    """Each lab BMC's first system as a registered server (rows written directly: these tests
    are about jobs, registration has its own), trusting the certificate the BMC presents now;
    address → server."""
    servers: dict[str, Server] = {}
    chosen = entries or lab.manifest
    certificates = await asyncio.gather(*(peer_fingerprint(e.address, e.port) for e in chosen))
    async with runtime.db.session() as session:
        profile = AuthProfile(node_classification=f"job lab {next(_serial)}")
        session.add(profile)
        await session.flush()
        assert profile.id is not None
        for entry, certificate in zip(chosen, certificates, strict=True):
            credential = Credential(
                auth_profile_id=profile.id,
                username=entry.username,
                password_encrypted=runtime.credentials.encrypt(entry.password),
            )
            session.add(credential)
            await session.flush()
            node = Node(
                ip=entry.address,
                port=entry.port,
                url=entry.url,
                status=NodeStatus.registered,
                fingerprint=certificate,
                trusted_fingerprint=certificate,
                auth_profile_id=profile.id,
                credential_id=credential.id,
            )
            session.add(node)
            await session.flush()
            server = Server(
                node_id=node.id,
                system_path=system_path(lab, entry.address),
                name=f"{entry.flavour}-{entry.index}",
                manufacturer=entry.manufacturer,
                model=entry.model,
                resource_pool_id=pool_id,
            )
            session.add(server)
            servers[entry.address] = server
        await session.commit()
    return servers


async def wait_for_job(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    job_id: int,
    *,
    states: set[str] = FINAL,
    timeout: float = 60.0,
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            job: dict[str, Any] = (await client.get(f"/api/job/{job_id}/", headers=headers)).json()
            if job["state"] in states:
                return job
            await asyncio.sleep(0.1)


def system_path(lab: Lab, address: str) -> str:
    """The first ComputerSystem's path, as the BMC's own Systems collection links it."""
    store = lab.bmc(address).store
    systems = store.body("/redfish/v1/").get("Systems", {}).get("@odata.id", "/redfish/v1/Systems")
    path: str = store.body(systems)["Members"][0]["@odata.id"]
    return path


def system(lab: Lab, address: str) -> dict[str, Any]:
    """The live body of the BMC's first ComputerSystem."""
    body: dict[str, Any] = lab.bmc(address).store.body(system_path(lab, address))
    return body


@asynccontextmanager
async def power_lab(
    subnet: int, count: int, power_delay: float, **extra: Any
) -> AsyncIterator[Lab]:
    """A lab on ``<LAB_NET>.<subnet>.0/24`` without latency, whose power transitions take
    ``power_delay`` (iDRAC refuses On for twice that after reaching Off)."""
    config = LabConfig(
        count=count,
        network=f"{LAB_NET}.{subnet}.0/24",
        latency="0",
        power_delay=power_delay,
        power_on_holdoff=2 * power_delay,
        **extra,
    )
    async with Lab(config) as lab:
        yield lab


def fast(settings: Settings, **extra: Any) -> Settings:
    """Job settings for a lab with sub-second power transitions."""
    values: dict[str, Any] = {
        "job_poll_interval_s": 0.2,
        "job_power_timeout_s": 5.0,
        "job_graceful_timeout_s": 10.0,
        "job_tick_timeout_s": 5.0,
        "redfish_read_timeout_s": 3.0,
    }
    return settings.model_copy(update=values | extra)


@asynccontextmanager
async def jobs_worker(settings: Settings) -> AsyncIterator[Runtime]:
    """A jobs worker in this process (its consumer, its watchdog), on the test broker."""
    async with scanner(settings, ("jobs",)) as runtime:
        yield runtime


async def start_job(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    server_id: int,
    what: str,
    body: dict[str, Any],
    *,
    finish: bool = False,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Start a power or boot job (202; 200 if it already ended by the answer, as a job with
    nothing to do may); with ``finish``, wait until it ends."""
    response = await client.post(f"/api/server/{server_id}/{what}/", json=body, headers=headers)
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    assert (job["state"] in FINAL) == (response.status_code == 200), response.text
    if finish:
        return await wait_for_job(client, headers, job["id"], timeout=timeout)
    return job


async def run_job(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """`start_job` that waits until the job ends."""
    return await start_job(*args, finish=True, **kwargs)


def advertised_reset_types(lab: Lab, address: str) -> tuple[str, ...] | None:
    """What the BMC's system says its Reset action allows (inline, or in its ActionInfo)."""
    store = lab.bmc(address).store
    spec = system(lab, address)["Actions"]["#ComputerSystem.Reset"]
    if "ResetType@Redfish.AllowableValues" in spec:
        return tuple(spec["ResetType@Redfish.AllowableValues"])
    info = spec.get("@Redfish.ActionInfo")
    if info is None:
        return None
    for parameter in store.body(info).get("Parameters", []):
        if parameter.get("Name") == "ResetType":
            return tuple(parameter["AllowableValues"])
    return None


class Worker:
    """``racksmith worker jobs`` as a child process, killed and replaced at will, with the lab
    and the database it works on."""

    def __init__(
        self,
        settings: Settings,
        logs: Path,
        lab: Lab,
        runtime: Runtime,
        nats: dict[str, str],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.extra_env = extra_env or {}
        self.nats = nats
        self.logs = logs
        self.lab = lab
        self.runtime = runtime
        self.started = 0
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.started += 1
        env = (
            worker_env(self.settings)
            | self.nats
            | {
                "RACKSMITH_JOB_POLL_INTERVAL_S": "0.3",
                "RACKSMITH_JOB_TICK_TIMEOUT_S": "3",
                "RACKSMITH_JOB_POWER_TIMEOUT_S": "8",
                "RACKSMITH_JOB_GRACEFUL_TIMEOUT_S": "8",
                "RACKSMITH_REDFISH_READ_TIMEOUT_S": "30",
            }
            | self.extra_env
        )
        self.process = await spawn_worker("jobs", env, self.logs / f"worker-{self.started}.log")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await self.process.wait()
