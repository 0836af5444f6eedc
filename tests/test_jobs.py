"""Jobs through the API with a real jobs worker, nats-server and lab: ticks move a job to its
end, the events tell it, one active job per server (by the database), the server is locked
meanwhile, cancel and retry, bulk starts, bounded waits, access, and BMC calls whose answer is
lost — the effect is looked for before anything is sent again."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.models import Server
from shared.platform.runtime import Runtime
from tests.conftest import bearer, obtain_tokens
from tests.discovery_helpers import events
from tests.job_helpers import (
    fast,
    jobs_worker,
    register_lab,
    run_job,
    start_job,
    system,
    wait_for_job,
)
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.broker, pytest.mark.lab]

NETWORK = f"{LAB_NET}.203"


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(
        count=16, network=f"{NETWORK}.0/24", latency="0", power_delay=0.3, power_on_holdoff=0.6
    )
    async with Lab(config) as running:
        yield running


@pytest.fixture(scope="module")
async def world(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, lab: Lab
) -> dict[str, Any]:
    """The lab's servers in a pool of a group with one member."""
    tag = uuid.uuid4().hex[:6]
    group = (
        await client.post("/api/groups/", json={"name": f"jobs-{tag}"}, headers=admin_headers)
    ).json()
    user = f"jobs-member-{tag}"
    await client.post(
        "/api/users/",
        json={"username": user, "password": "password-123", "groups": [group["id"]]},
        headers=admin_headers,
    )
    pool = (
        await client.post(
            "/api/pool/", json={"name": f"jobs-{tag}", "group": group["id"]}, headers=admin_headers
        )
    ).json()
    servers = await register_lab(runtime, lab, pool_id=pool["id"])
    member = bearer((await obtain_tokens(client, user, "password-123"))["access"])
    return {"pool": pool["id"], "servers": list(servers.values()), "member": member}


@pytest.fixture(scope="module")
async def worker(settings: Settings) -> AsyncIterator[Runtime]:
    async with jobs_worker(fast(settings)) as runtime:
        yield runtime


def _server(world: dict[str, Any], lab: Lab, flavour: str, nth: int = 0) -> Server:
    addresses = [e.address for e in lab.manifest if e.flavour == flavour]
    wanted = addresses[nth]
    server: Server = next(
        s for s in world["servers"] if s.name == f"{flavour}-{_index(lab, wanted)}"
    )
    return server


def _index(lab: Lab, address: str) -> int:
    return next(e.index for e in lab.manifest if e.address == address)


def _address(lab: Lab, server: Server) -> str:
    index = int((server.name or "").rsplit("-", 1)[1])
    return lab.manifest[index].address


async def test_a_job_is_moved_by_ticks_to_its_end_and_events_tell_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    server = _server(world, lab, "hpe")
    job = await start_job(client, admin_headers, server.id or 0, "power", {"action": "power_cycle"})
    assert job["state"] == "pending" and job["kind"] == "power" and job["attempts"] == 1
    assert job["params"] == {"action": "power_cycle", "force_after_timeout": False}
    assert job["deadline_at"] is not None and job["created_by"] is not None
    # Locked at once, in the transaction that created the job.
    shown = (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()
    assert shown["locked_by"] == f"job/{job['id']}"
    done = await wait_for_job(client, admin_headers, job["id"])
    assert done["state"] == "completed", done
    assert done["step"] == "await_power" and done["progress"] == 100
    assert done["started_at"] and done["finished_at"] and done["error_code"] is None
    shown = (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()
    assert shown["locked_by"] is None and shown["power_state"] == "On"

    changes = [
        e["type"].rsplit(".", 1)[1]
        for e in await events(runtime, f"racksmith.evt.job.{job['id']}.*")
    ]
    assert changes[0] == "created" and changes[1] == "started" and changes[-1] == "completed"
    assert "waiting" in changes  # for PowerState Off, then On
    assert set(changes) <= {"created", "started", "progress", "waiting", "completed"}
    final = (await events(runtime, f"racksmith.evt.job.{job['id']}.completed"))[0]["data"]
    assert final["state"] == "completed" and final["resource_pool"] == world["pool"]
    # power_state followed the BMC: Off during the cycle, On at the end.
    power = [
        (e["data"]["previous_power_state"], e["data"]["power_state"])
        for e in await events(runtime, f"racksmith.evt.server.{server.id}.power_changed")
    ]
    assert "Off" in [now for _, now in power] and power[-1][1] == "On"


async def test_one_active_job_per_server_and_the_second_start_names_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    server = _server(world, lab, "openbmc")
    answers = await asyncio.gather(
        *(
            client.post(
                f"/api/server/{server.id}/power/", json={"action": action}, headers=admin_headers
            )
            for action in ("power_cycle", "restart")
        )
    )
    assert sorted(a.status_code for a in answers) == [202, 409]
    accepted = next(a.json() for a in answers if a.status_code == 202)
    refused = next(a.json() for a in answers if a.status_code == 409)
    assert refused["job"] == accepted["id"] and str(accepted["id"]) in refused["detail"]
    listed = (
        await client.get(f"/api/job/?server={server.id}&state=pending", headers=admin_headers)
    ).json()
    assert [j["id"] for j in listed["results"] if j["state"] != "completed"] in (
        [accepted["id"]],
        [],
    )
    await wait_for_job(client, admin_headers, accepted["id"])
    # Once it ended, the next job starts.
    again = await run_job(client, admin_headers, server.id or 0, "power", {"action": "off"})
    assert again["state"] == "completed"


async def test_a_server_with_an_active_job_cannot_leave_its_pool(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    server = _server(world, lab, "dell")
    address = _address(lab, server)
    lab.bmc(address).set_fault("ignore_acpi")  # the shutdown waits until cancelled
    try:
        job = await start_job(
            client, admin_headers, server.id or 0, "power", {"action": "graceful_shutdown"}
        )
        removed = await client.post(
            "/api/server/remove_from_pool/", json={"servers": [server.id]}, headers=admin_headers
        )
        assert removed.status_code == 409
        assert removed.json()["job"] == job["id"]
        assert removed.json()["conflicts"] == [
            {"server": server.id, "locked_by": f"job/{job['id']}", "job": job["id"]}
        ]
        moved = await client.patch(
            f"/api/server/{server.id}/", json={"resource_pool": None}, headers=admin_headers
        )
        assert moved.status_code == 409 and moved.json()["job"] == job["id"]
        shown = (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()
        assert shown["resource_pool"] == world["pool"]
        await wait_for_job(client, admin_headers, job["id"], states={"waiting"})
        cancelled = await client.post(
            f"/api/job/{job['id']}/cancel/", params={"wait": 30}, headers=admin_headers
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["cancel_requested"] is True
        assert any("Cancel requested by admin" in m["text"] for m in cancelled.json()["messages"])
    finally:
        lab.bmc(address).clear_fault()
    # A finished job cannot be cancelled.
    again = await client.post(f"/api/job/{job['id']}/cancel/", headers=admin_headers)
    assert again.status_code == 409
    shown = (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()
    assert shown["locked_by"] is None


async def test_graceful_shutdown_timeout_then_retry_as_a_new_job(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    server = _server(world, lab, "supermicro")
    address = _address(lab, server)
    lab.bmc(address).set_fault("ignore_acpi")
    try:
        failed = await run_job(
            client,
            admin_headers,
            server.id or 0,
            "power",
            {"action": "graceful_shutdown", "timeout": 1.5},
        )
        assert failed["state"] == "failed"
        assert failed["error_code"] == "graceful_shutdown_timeout"
        assert "PowerState still reads On" in failed["error"]
        forced = await run_job(
            client,
            admin_headers,
            server.id or 0,
            "power",
            {"action": "graceful_shutdown", "timeout": 1.5, "force_after_timeout": True},
        )
        assert forced["state"] == "completed", forced
        assert any("forcing it" in m["text"] for m in forced["messages"])
        assert system(lab, address)["PowerState"] == "Off"
    finally:
        lab.bmc(address).clear_fault()
    # The failed job again, now that the OS listens (the server is off: nothing to do).
    retried = await client.post(
        f"/api/job/{failed['id']}/retry/", params={"wait": 30}, headers=admin_headers
    )
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body["id"] != failed["id"] and body["retry_of"] == failed["id"]
    assert body["attempts"] == 2 and body["state"] == "completed"
    assert body["params"] == failed["params"]
    twice = await client.post(f"/api/job/{failed['id']}/retry/", headers=admin_headers)
    assert twice.status_code == 409 and twice.json()["job"] == body["id"]
    completed = await client.post(f"/api/job/{body['id']}/retry/", headers=admin_headers)
    assert completed.status_code == 409
    chain = (await client.get(f"/api/job/?retry_of={failed['id']}", headers=admin_headers)).json()
    assert [j["id"] for j in chain["results"]] == [body["id"]]


async def test_bulk_power_is_all_or_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    servers = [_server(world, lab, f, 1) for f in ("dell", "supermicro", "hpe")]
    ids = [s.id for s in servers]
    accepted = await client.post(
        "/api/server/power/",
        json={"servers": ids, "action": "power_cycle"},
        params={"wait": 60},
        headers=admin_headers,
    )
    assert accepted.status_code == 200, accepted.text
    jobs = accepted.json()["jobs"]
    assert [j["server"] for j in jobs] == ids
    assert {j["state"] for j in jobs} == {"completed"}
    # One server busy: 409 naming it and its job, and no job for the others.
    lab.bmc(_address(lab, servers[0])).set_fault("ignore_acpi")
    try:
        busy = await start_job(
            client, admin_headers, servers[0].id or 0, "power", {"action": "graceful_shutdown"}
        )
        before = (await client.get("/api/job/?page_size=1", headers=admin_headers)).json()
        refused = await client.post(
            "/api/server/power/", json={"servers": ids, "action": "off"}, headers=admin_headers
        )
        assert refused.status_code == 409
        assert refused.json()["conflicts"] == [{"server": servers[0].id, "job": busy["id"]}]
        after = (await client.get("/api/job/?page_size=1", headers=admin_headers)).json()
        assert after["count"] == before["count"]
        await client.post(f"/api/job/{busy['id']}/cancel/", headers=admin_headers)
    finally:
        lab.bmc(_address(lab, servers[0])).clear_fault()
    unknown = await client.post(
        "/api/server/power/", json={"servers": [987654], "action": "off"}, headers=admin_headers
    )
    assert unknown.status_code == 400 and "servers" in unknown.json()


@pytest.mark.parametrize(
    ("what", "body", "field"),
    [
        ("power", {"action": "reboot"}, "action"),
        ("power", {}, "action"),
        ("power", {"action": "off", "timeout": 30}, "timeout"),
        ("power", {"action": "on", "force_after_timeout": True}, "force_after_timeout"),
        ("boot", {"target": "uefi_http"}, "http_boot_uri"),
        ("boot", {"target": "pxe", "http_boot_uri": "http://x/y"}, "http_boot_uri"),
        ("boot", {"target": "floppy"}, "target"),
        ("boot", {"target": "pxe", "enabled": "always"}, "enabled"),
        ("boot", {"target": "pxe", "mode": "bios"}, "mode"),
    ],
)
async def test_bad_requests_name_the_field_and_start_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    what: str,
    body: dict[str, Any],
    field: str,
) -> None:
    server = _server(world, lab, "dell", 2)
    before = (await client.get("/api/job/?page_size=1", headers=admin_headers)).json()["count"]
    response = await client.post(
        f"/api/server/{server.id}/{what}/", json=body, headers=admin_headers
    )
    assert response.status_code == 400
    assert field in response.json(), response.json()
    after = (await client.get("/api/job/?page_size=1", headers=admin_headers)).json()["count"]
    assert after == before


async def test_members_see_and_act_on_their_pools_jobs_only(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    member = world["member"]
    server = _server(world, lab, "openbmc", 1)
    mine = await run_job(client, member, server.id or 0, "boot", {"target": "pxe"})
    assert mine["state"] == "completed" and mine["kind"] == "boot"
    # A server outside the member's pools, and its job.
    outside = _server(world, lab, "openbmc", 3)
    removed = await client.post(
        "/api/server/remove_from_pool/", json={"servers": [outside.id]}, headers=admin_headers
    )
    assert removed.status_code == 200
    theirs = await run_job(client, admin_headers, outside.id or 0, "boot", {"target": "hdd"})
    assert (await client.get(f"/api/job/{theirs['id']}/", headers=member)).status_code == 404
    assert (await client.get(f"/api/job/{mine['id']}/", headers=member)).status_code == 200
    for action in ("cancel", "retry"):
        refused = await client.post(f"/api/job/{theirs['id']}/{action}/", headers=member)
        assert refused.status_code == 404
    started = await client.post(
        f"/api/server/{outside.id}/power/", json={"action": "on"}, headers=member
    )
    assert started.status_code == 404
    listed = (await client.get("/api/job/?page_size=1000", headers=member)).json()
    servers = {j["server"] for j in listed["results"]}
    assert server.id in servers and outside.id not in servers
    searched = (await client.get("/api/job/?search=boot&kind=boot", headers=member)).json()
    assert searched["count"] >= 1 and {j["kind"] for j in searched["results"]} == {"boot"}


async def test_listing_filters_and_ordering(
    client: httpx.AsyncClient, admin_headers: dict[str, str], world: dict[str, Any]
) -> None:
    newest_first = (await client.get("/api/job/?page_size=5", headers=admin_headers)).json()
    ids = [j["id"] for j in newest_first["results"]]
    assert ids == sorted(ids, reverse=True)
    oldest = (
        await client.get("/api/job/?ordering=created_at&page_size=5", headers=admin_headers)
    ).json()
    assert [j["id"] for j in oldest["results"]] == sorted(j["id"] for j in oldest["results"])
    failed = (await client.get("/api/job/?state=failed", headers=admin_headers)).json()
    assert all(j["state"] == "failed" for j in failed["results"])
    bad = await client.get("/api/job/?ordering=nonsense", headers=admin_headers)
    assert bad.status_code == 400 and "ordering" in bad.json()
    assert (await client.get("/api/job/987654/", headers=admin_headers)).status_code == 404


async def test_a_reset_whose_answer_is_lost_is_not_sent_again(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    """The BMC applies the ForceOff and drops the connection (or never answers): the job reads
    PowerState instead of POSTing again, and completes with one reset applied."""
    for fault, nth in (("drop_after_apply:ForceOff", 2), ("hang_after_apply:ForceOff", 3)):
        server = _server(world, lab, "hpe", nth)
        address = _address(lab, server)
        lab.bmc(address).counters.clear()
        lab.bmc(address).set_fault(fault)
        try:
            job = await run_job(client, admin_headers, server.id or 0, "power", {"action": "off"})
        finally:
            lab.bmc(address).clear_fault()
        assert job["state"] == "completed", (fault, job)
        counters = lab.counters(address)
        assert counters["dropped"] == 1, fault
        assert counters["reset_types"] == {"ForceOff": 1}, fault
        assert counters["resets_applied"] == {"ForceOff": 1}, fault
        assert any("reading PowerState before asking again" in m["text"] for m in job["messages"])


async def test_a_reset_lost_before_the_bmc_acted_is_sent_once_more(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    settings: Settings,
) -> None:
    """The connection breaks before the BMC acts: nothing changes within the step's deadline,
    so the reset is sent again — once."""
    server = _server(world, lab, "openbmc", 2)
    address = _address(lab, server)
    lab.bmc(address).counters.clear()
    lab.bmc(address).set_fault("drop_before_apply:ForceOff")
    async with jobs_worker(fast(settings, job_power_timeout_s=2.0)):
        job = await run_job(client, admin_headers, server.id or 0, "power", {"action": "off"})
    assert job["state"] == "completed", job
    counters = lab.counters(address)
    assert counters["reset_types"] == {"ForceOff": 2}
    assert counters["resets_applied"] == {"ForceOff": 1}
    assert any("sending it again" in m["text"] for m in job["messages"])


async def test_a_boot_patch_whose_answer_is_lost_is_read_back(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    server = _server(world, lab, "supermicro", 2)
    address = _address(lab, server)
    lab.bmc(address).counters.clear()
    lab.bmc(address).set_fault("drop_after_apply:PATCH")
    try:
        job = await run_job(client, admin_headers, server.id or 0, "boot", {"target": "cd"})
    finally:
        lab.bmc(address).clear_fault()
    assert job["state"] == "completed", job
    assert sum(lab.counters(address)["patches_applied"].values()) == 1
    assert system(lab, address)["Boot"]["BootSourceOverrideTarget"] == "Cd"


async def test_an_unreachable_bmc_fails_the_job_with_a_reason(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    world: dict[str, Any],
    worker: Runtime,
) -> None:
    server = _server(world, lab, "dell", 3)
    address = _address(lab, server)
    lab.bmc(address).set_fault("reset")
    try:
        job = await run_job(client, admin_headers, server.id or 0, "power", {"action": "on"}, 90)
    finally:
        lab.bmc(address).clear_fault()
    assert job["state"] == "failed" and job["error_code"] == "bmc_unreachable", job
    assert address in job["error"]
    assert Counter(m["text"].split(":")[0] for m in job["messages"])  # every attempt noted
