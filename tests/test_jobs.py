"""Jobs through the API with a real jobs worker, nats-server and lab: ticks move a job to its
end, the events tell it, one active job per server (by the database), the server is locked
meanwhile, cancel and retry, bulk starts, bounded waits, access, and BMC calls whose answer is
lost — the effect is looked for before anything is sent again."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
import pytest

from bmclab import Lab
from shared.core.settings import Settings
from shared.models import Server
from shared.platform.runtime import Runtime
from tests.discovery_helpers import events
from tests.job_helpers import (
    fast,
    jobs_worker,
    power_lab,
    register_lab,
    run_job,
    start_job,
    system,
    system_path,
    wait_for_job,
)
from tests.pool_helpers import group_with_member

pytestmark = [pytest.mark.broker, pytest.mark.lab]


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with power_lab(203, 20, 0.3) as running:
        yield running


@dataclass(frozen=True)
class World:
    """The lab's servers in a pool of a group with one member."""

    lab: Lab
    runtime: Runtime
    client: httpx.AsyncClient
    admin: dict[str, str]
    pool: int
    servers: list[Server]
    member: dict[str, str]

    @property
    def http(self) -> tuple[httpx.AsyncClient, dict[str, str]]:
        return self.client, self.admin

    def server(self, flavour: str, nth: int = 0) -> Server:
        """The ``nth`` server of a flavour: each test works on servers of its own."""
        entry = [e for e in self.lab.manifest if e.flavour == flavour][nth]
        return next(s for s in self.servers if s.name == f"{flavour}-{entry.index}")

    def address(self, server: Server) -> str:
        return self.lab.manifest[int((server.name or "").rsplit("-", 1)[1])].address


@pytest.fixture(scope="module")
async def world(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, lab: Lab
) -> World:
    member = await group_with_member(client, admin_headers, f"jobs-{uuid.uuid4().hex[:6]}")
    servers = await register_lab(runtime, lab, pool_id=member.pool)
    return World(
        lab, runtime, client, admin_headers, member.pool, list(servers.values()), member.headers
    )


@pytest.fixture(scope="module", autouse=True)
async def worker(settings: Settings) -> AsyncIterator[Runtime]:
    async with jobs_worker(fast(settings)) as runtime:
        yield runtime


async def test_a_job_is_moved_by_ticks_to_its_end_and_events_tell_it(world: World) -> None:
    client, admin_headers = world.http
    server = world.server("hpe")
    job = await start_job(client, admin_headers, server.id or 0, "power", {"action": "power_cycle"})
    # As it is when answered: a worker may have taken it up already.
    assert job["state"] in ("pending", "running", "waiting")
    assert job["kind"] == "power" and job["attempts"] == 1
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
        for e in await events(world.runtime, f"racksmith.evt.job.{job['id']}.*")
    ]
    assert changes[0] == "created" and changes[1] == "started" and changes[-1] == "completed"
    assert "waiting" in changes  # for PowerState Off, then On
    assert set(changes) <= {"created", "started", "progress", "waiting", "completed"}
    final = (await events(world.runtime, f"racksmith.evt.job.{job['id']}.completed"))[0]["data"]
    assert final["state"] == "completed" and final["resource_pool"] == world.pool
    # power_state followed the BMC: Off during the cycle, On at the end.
    power = [
        (e["data"]["previous_power_state"], e["data"]["power_state"])
        for e in await events(world.runtime, f"racksmith.evt.server.{server.id}.power_changed")
    ]
    assert "Off" in [now for _, now in power] and power[-1][1] == "On"


async def test_one_active_job_per_server_and_the_second_start_names_it(world: World) -> None:
    client, admin_headers = world.http
    server = world.server("openbmc")
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


async def test_a_server_with_an_active_job_cannot_leave_its_pool(world: World) -> None:
    client, admin_headers = world.http
    server = world.server("dell")
    address = world.address(server)
    world.lab.bmc(address).set_fault("ignore_acpi")  # the shutdown waits until cancelled
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
        assert shown["resource_pool"] == world.pool
        await wait_for_job(client, admin_headers, job["id"], states={"waiting"})
        cancelled = await client.post(
            f"/api/job/{job['id']}/cancel/", params={"wait": 30}, headers=admin_headers
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["cancel_requested"] is True
        texts = [m["text"] for m in cancelled.json()["messages"]]
        assert any(re.fullmatch(r"Cancel requested by user \d+\.", text) for text in texts)
        # Members of the pool read the messages too: no username of whoever cancelled.
        shown = (await client.get(f"/api/job/{job['id']}/", headers=world.member)).json()
        assert not any("admin" in m["text"] for m in shown["messages"]), shown["messages"]
    finally:
        world.lab.bmc(address).clear_fault()
    # A finished job cannot be cancelled.
    again = await client.post(f"/api/job/{job['id']}/cancel/", headers=admin_headers)
    assert again.status_code == 409
    shown = (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()
    assert shown["locked_by"] is None


async def test_graceful_shutdown_timeout_then_retry_as_a_new_job(world: World) -> None:
    client, admin_headers = world.http
    server = world.server("supermicro")
    address = world.address(server)
    world.lab.bmc(address).set_fault("ignore_acpi")
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
        assert system(world.lab, address)["PowerState"] == "Off"
    finally:
        world.lab.bmc(address).clear_fault()
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


async def test_a_graceful_restart_the_os_ignores_is_not_reported_done(world: World) -> None:
    """GracefulRestart accepted (204) by a BMC whose host ignores ACPI: PowerState stays On and
    no boot happens, so the job fails at the graceful timeout rather than taking the BMC's word
    — or, with ``force_after_timeout``, forces the restart, which the lab counts as a boot."""
    client, admin_headers = world.http
    server = world.server("hpe", 4)
    address = world.address(server)
    bmc = world.lab.bmc(address)
    bmc.set_fault("ignore_acpi")
    try:
        boots = bmc.counters.boots
        failed = await run_job(
            client,
            admin_headers,
            server.id or 0,
            "power",
            {"action": "graceful_restart", "timeout": 1.5},
        )
        assert (failed["state"], failed["error_code"]) == ("failed", "graceful_shutdown_timeout")
        assert "No sign of a restart after ResetType=GracefulRestart" in failed["error"]
        assert bmc.counters.boots == boots
        forced = await run_job(
            client,
            admin_headers,
            server.id or 0,
            "power",
            {"action": "graceful_restart", "timeout": 1.5, "force_after_timeout": True},
        )
        assert forced["state"] == "completed", forced
        assert any("forcing it" in m["text"] for m in forced["messages"])
        assert bmc.counters.boots == boots + 1
        # A BMC without BootProgress cannot show a warm restart: neither "ignored" nor forced
        # (the graceful one may have happened), but said to be unconfirmed.
        resource = bmc.store.get(system_path(world.lab, address))
        assert resource is not None
        resource.body.pop("BootProgress")
        resource.changed()
        unseen = await run_job(
            client,
            admin_headers,
            server.id or 0,
            "power",
            {"action": "graceful_restart", "timeout": 1.5, "force_after_timeout": True},
        )
        assert (unseen["state"], unseen["error_code"]) == ("failed", "restart_unconfirmed")
        assert bmc.counters.boots == boots + 1
        assert world.lab.counters(address)["resets_applied"].get("ForceRestart", 0) == 1
    finally:
        bmc.clear_fault()


async def test_the_job_deadline_leaves_room_for_the_requested_timeout(world: World) -> None:
    """A graceful action given more time than the default job deadline leaves: ``deadline_at``
    covers that time and the steps around it, on the first attempt and on its retry."""
    client, admin_headers = world.http
    server = world.server("openbmc", 4)
    address = world.address(server)
    world.lab.bmc(address).set_fault("ignore_acpi")  # the shutdown waits until cancelled
    hours = 3 * 3600
    body = {"action": "graceful_shutdown", "timeout": hours}
    try:
        job = await start_job(client, admin_headers, server.id or 0, "power", body)
        cancelled = await client.post(
            f"/api/job/{job['id']}/cancel/", params={"wait": 30}, headers=admin_headers
        )
        assert cancelled.status_code == 200, cancelled.text
        retried = await client.post(f"/api/job/{job['id']}/retry/", headers=admin_headers)
        assert retried.status_code == 202, retried.text
        for shown in (job, retried.json()):
            created = datetime.fromisoformat(shown["created_at"])
            deadline = datetime.fromisoformat(shown["deadline_at"])
            assert (deadline - created).total_seconds() > hours
        again = await client.post(
            f"/api/job/{retried.json()['id']}/cancel/", params={"wait": 30}, headers=admin_headers
        )
        assert again.status_code == 200, again.text
    finally:
        world.lab.bmc(address).clear_fault()
    # Without a timeout, the job deadline is the configured one.
    answered = await client.post(
        f"/api/server/{server.id}/power/",
        json={"action": "on"},
        params={"wait": 30},
        headers=admin_headers,
    )
    assert answered.status_code == 200, answered.text
    plain = answered.json()
    created = datetime.fromisoformat(plain["created_at"])
    deadline = datetime.fromisoformat(plain["deadline_at"])
    assert (deadline - created).total_seconds() < hours


async def test_dell_refusing_on_right_after_off_is_retried(world: World) -> None:
    """iDRAC answers 409 to On while, and for a moment after, powering off: the job tries the
    On again until the BMC takes it, and completes with one On applied."""
    client, admin_headers = world.http
    server = world.server("dell", 4)
    address = world.address(server)
    bmc = world.lab.bmc(address)
    off = await run_job(client, admin_headers, server.id or 0, "power", {"action": "off"})
    assert off["state"] == "completed", off
    # Long enough that the On job's first POST lands within it on a loaded machine, well
    # within the reset step's deadline.
    bmc.behaviour = replace(bmc.behaviour, power_on_holdoff=2.0)
    bmc.host(system_path(world.lab, address)).off_since = time.monotonic()
    bmc.counters.clear()
    on = await run_job(client, admin_headers, server.id or 0, "power", {"action": "on"})
    assert on["state"] == "completed", on
    retries = [m for m in on["messages"] if m["code"] == "bmc_busy"]
    assert retries and all("409" in m["text"] for m in retries), on["messages"]
    counters = world.lab.counters(address)
    assert counters["reset_types"]["On"] == len(retries) + 1
    assert counters["resets_applied"] == {"On": 1}
    assert system(world.lab, address)["PowerState"] == "On"


async def test_bulk_power_is_all_or_nothing(world: World) -> None:
    client, admin_headers = world.http
    servers = [world.server(f, 1) for f in ("dell", "supermicro", "hpe")]
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
    world.lab.bmc(world.address(servers[0])).set_fault("ignore_acpi")
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
        world.lab.bmc(world.address(servers[0])).clear_fault()
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
        ("power", {"action": "graceful_shutdown", "timeout": 0}, "timeout"),
        ("power", {"action": "graceful_restart", "timeout": 86_401}, "timeout"),
        ("power", {"action": "graceful_restart", "timeout": "soon"}, "timeout"),
        ("boot", {"target": "uefi_http"}, "http_boot_uri"),
        ("boot", {"target": "pxe", "http_boot_uri": "http://x/y"}, "http_boot_uri"),
        ("boot", {"target": "floppy"}, "target"),
        ("boot", {"target": "pxe", "enabled": "always"}, "enabled"),
        ("boot", {"target": "pxe", "mode": "bios"}, "mode"),
    ],
)
async def test_bad_requests_name_the_field_and_start_nothing(
    world: World,
    what: str,
    body: dict[str, Any],
    field: str,
) -> None:
    client, admin_headers = world.http
    server = world.server("dell", 2)
    before = (await client.get("/api/job/?page_size=1", headers=admin_headers)).json()["count"]
    response = await client.post(
        f"/api/server/{server.id}/{what}/", json=body, headers=admin_headers
    )
    assert response.status_code == 400
    assert field in response.json(), response.json()
    after = (await client.get("/api/job/?page_size=1", headers=admin_headers)).json()["count"]
    assert after == before


async def test_members_see_and_act_on_their_pools_jobs_only(world: World) -> None:
    client, admin_headers = world.http
    member = world.member
    server = world.server("openbmc", 1)
    mine = await run_job(client, member, server.id or 0, "boot", {"target": "pxe"})
    assert mine["state"] == "completed" and mine["kind"] == "boot"
    # A server outside the member's pools, and its job.
    outside = world.server("openbmc", 3)
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
    client: httpx.AsyncClient, admin_headers: dict[str, str], world: World
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
    # An unknown ordering is ignored, as DRF's OrderingFilter does: the default order stays.
    unknown = await client.get("/api/job/?ordering=nonsense", headers=admin_headers)
    assert unknown.status_code == 200
    ids = [j["id"] for j in unknown.json()["results"]]
    assert ids == sorted(ids, reverse=True)
    assert (await client.get("/api/job/987654/", headers=admin_headers)).status_code == 404


async def test_a_reset_whose_answer_is_lost_is_not_sent_again(world: World) -> None:
    """The BMC applies the ForceOff and drops the connection (or never answers): the job reads
    PowerState instead of POSTing again, and completes with one reset applied."""
    client, admin_headers = world.http
    for fault, nth in (("drop_after_apply:ForceOff", 2), ("hang_after_apply:ForceOff", 3)):
        server = world.server("hpe", nth)
        address = world.address(server)
        world.lab.bmc(address).counters.clear()
        world.lab.bmc(address).set_fault(fault)
        try:
            job = await run_job(client, admin_headers, server.id or 0, "power", {"action": "off"})
        finally:
            world.lab.bmc(address).clear_fault()
        assert job["state"] == "completed", (fault, job)
        counters = world.lab.counters(address)
        assert counters["dropped"] == 1, fault
        assert counters["reset_types"] == {"ForceOff": 1}, fault
        assert counters["resets_applied"] == {"ForceOff": 1}, fault
        assert any("reading PowerState before asking again" in m["text"] for m in job["messages"])


async def test_a_reset_lost_before_the_bmc_acted_is_sent_once_more(world: World) -> None:
    """The connection breaks before the BMC acts: nothing changes within the step's deadline,
    so the reset is sent again — once."""
    client, admin_headers = world.http
    server = world.server("openbmc", 2)
    address = world.address(server)
    world.lab.bmc(address).counters.clear()
    world.lab.bmc(address).set_fault("drop_before_apply:ForceOff")
    job = await run_job(client, admin_headers, server.id or 0, "power", {"action": "off"})
    assert job["state"] == "completed", job
    counters = world.lab.counters(address)
    assert counters["reset_types"] == {"ForceOff": 2}
    assert counters["resets_applied"] == {"ForceOff": 1}
    assert any("sending it again" in m["text"] for m in job["messages"])


async def test_a_boot_patch_whose_answer_is_lost_is_read_back(world: World) -> None:
    client, admin_headers = world.http
    server = world.server("supermicro", 2)
    address = world.address(server)
    world.lab.bmc(address).counters.clear()
    world.lab.bmc(address).set_fault("drop_after_apply:PATCH")
    try:
        job = await run_job(client, admin_headers, server.id or 0, "boot", {"target": "cd"})
    finally:
        world.lab.bmc(address).clear_fault()
    assert job["state"] == "completed", job
    assert sum(world.lab.counters(address)["patches_applied"].values()) == 1
    assert system(world.lab, address)["Boot"]["BootSourceOverrideTarget"] == "Cd"


async def test_an_unreachable_bmc_fails_the_job_with_a_reason(world: World) -> None:
    client, admin_headers = world.http
    server = world.server("dell", 3)
    address = world.address(server)
    world.lab.bmc(address).set_fault("reset")
    try:
        job = await run_job(
            client, admin_headers, server.id or 0, "power", {"action": "on"}, timeout=90
        )
    finally:
        world.lab.bmc(address).clear_fault()
    assert job["state"] == "failed" and job["error_code"] == "bmc_unreachable", job
    assert address in job["error"]
    assert Counter(m["text"].split(":")[0] for m in job["messages"])  # every attempt noted
    # A member sees what kind of failure it was, not which BMC (nor the account): the code,
    # and a generic text in `error`, in the messages reporting it and in the job's events.
    shown = (await client.get(f"/api/job/{job['id']}/", headers=world.member)).json()
    assert shown["error_code"] == "bmc_unreachable"
    assert "administrator" in shown["error"]
    texts = [m["text"] for m in shown["messages"]]
    assert not any(address in text for text in texts), texts
    assert [m["code"] for m in shown["messages"] if m["code"]] == [
        m["code"] for m in job["messages"] if m["code"]
    ]
    heard = await client.get(
        "/api/events/", params={"entity": f"job/{job['id']}"}, headers=world.member
    )
    assert heard.status_code == 200
    events = heard.json()["results"]
    assert {e["type"] for e in events} >= {"io.racksmith.job.created", "io.racksmith.job.failed"}
    assert address not in heard.text


async def test_a_restart_whose_answer_is_lost_is_judged_by_what_the_bmc_shows(
    world: World,
) -> None:
    """A lost ForceRestart: applied (the host went down and up) → completed, not sent again;
    never applied → sent again once the step's deadline shows no new boot; never applied on a
    BMC without BootProgress → ``restart_unconfirmed`` rather than a guess either way."""
    client, admin_headers = world.http
    server = world.server("dell", 2)
    address = world.address(server)
    bmc = world.lab.bmc(address)
    cases = [
        ("drop_after_apply:ForceRestart", "completed", {"ForceRestart": 1}, 1),
        ("drop_before_apply:ForceRestart", "completed", {"ForceRestart": 2}, 1),
    ]
    for fault, state, received, applied in cases:
        bmc.counters.clear()
        bmc.set_fault(fault)
        job = await run_job(client, admin_headers, server.id or 0, "power", {"action": "restart"})
        assert (job["state"], job["error_code"]) == (state, None), (fault, job)
        counters = world.lab.counters(address)
        assert counters["reset_types"] == received, fault
        assert counters["resets_applied"] == {"ForceRestart": applied}, fault
    resource = bmc.store.get(system_path(world.lab, address))
    assert resource is not None
    resource.body.pop("BootProgress")
    resource.changed()
    bmc.counters.clear()
    bmc.set_fault("drop_before_apply:ForceRestart")
    job = await run_job(client, admin_headers, server.id or 0, "power", {"action": "restart"})
    assert (job["state"], job["error_code"]) == ("failed", "restart_unconfirmed"), (
        [m["text"] for m in job["messages"]],
        world.lab.counters(address),
    )
    assert world.lab.counters(address)["reset_types"] == {"ForceRestart": 1}


async def test_a_bmc_presenting_another_certificate_gets_no_job_work(world: World) -> None:
    """An impostor at a BMC's address: the job's connection stops at the TLS handshake, the
    node stops in certificate_changed, and the next job is refused before it connects — no
    credential ever reaches the impostor."""
    client, admin_headers = world.http
    server = world.server("supermicro", 3)
    address = world.address(server)
    bmc = world.lab.bmc(address)
    world.lab.impersonate(address)
    try:
        met = await run_job(client, admin_headers, server.id or 0, "power", {"action": "on"})
        assert (met["state"], met["error_code"]) == ("failed", "bmc_certificate_mismatch"), met
        assert "accept_certificate" in met["error"]
        node = (await client.get(f"/api/node/{server.node_id}/", headers=admin_headers)).json()
        assert node["status"] == "certificate_changed"
        assert node["fingerprint"] != node["trusted_fingerprint"]
        refused = await run_job(client, admin_headers, server.id or 0, "boot", {"target": "pxe"})
        assert (refused["state"], refused["error_code"]) == (met["state"], met["error_code"])
        assert refused["started_at"] is not None and "accept_certificate" in refused["error"]
    finally:
        world.lab.restore_certificate(address)
    assert bmc.impostor_received == []
    changed = await events(
        world.runtime, f"racksmith.evt.node.{server.node_id}.certificate_changed"
    )
    assert len(changed) == 1
