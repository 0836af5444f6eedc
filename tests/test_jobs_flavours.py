"""Every power action and boot override on every lab flavour and every recorded mockup, through
the API and a real jobs worker: the resets the BMC applied are the planned ones, PowerState
reads back as the action leads, the server's power_state follows, and boot overrides read back
as sent — or the job fails with the stable error_code when the BMC does not offer it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bmclab import Lab
from services.jobs.kinds.power import Unsupported, plan
from shared.core.settings import Settings
from shared.models import Server
from shared.models.jobs import PowerAction
from shared.platform.runtime import Runtime
from tests.discovery_helpers import mockup_dirs
from tests.job_helpers import (
    advertised_reset_types,
    fast,
    jobs_worker,
    power_lab,
    register_lab,
    run_job,
    system,
)

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]

ACTIONS = (
    *("off", "on", "power_cycle", "restart", "graceful_restart", "graceful_shutdown", "on"),
    "nmi",
)
AFTER = {"off": "Off", "graceful_shutdown": "Off"}  # every other action leaves the host On


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    # Transitions slow enough for a poll to see: on a mockup without BootProgress, PowerState
    # leaving On is the only sign a graceful restart happened.
    async with power_lab(202, 4, 1.0, mockups=tuple(mockup_dirs())) as running:
        yield running


@dataclass(frozen=True)
class Fleet:
    lab: Lab
    servers: dict[str, Server]  # by BMC address
    client: httpx.AsyncClient
    admin: dict[str, str]

    @property
    def http(self) -> tuple[httpx.AsyncClient, dict[str, str]]:
        return self.client, self.admin

    def of(self, flavour: str) -> tuple[str, Server]:
        return next((a, s) for a, s in self.servers.items() if _label(self.lab, a) == flavour)


@pytest.fixture(scope="module")
async def fleet(
    lab: Lab,
    runtime: Runtime,
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> AsyncIterator[Fleet]:
    registered = await register_lab(runtime, lab)
    # This lab's transitions take a second (so a poll sees them) and its power-on holdoff two:
    # a step that waits them out needs more than the sub-second labs' step limit.
    async with jobs_worker(fast(settings, job_tick_timeout_s=10.0)):
        yield Fleet(lab, registered, client, admin_headers)


def _label(lab: Lab, address: str) -> str:
    return next(e.flavour for e in lab.manifest if e.address == address)


async def _actions_on(
    client: httpx.AsyncClient, headers: dict[str, str], lab: Lab, address: str, server: Server
) -> list[str]:
    """Run every action in turn on one server; returns what went wrong."""
    problems: list[str] = []
    allowed = advertised_reset_types(lab, address)
    for action in ACTIONS:
        before = Counter(lab.counters(address)["resets_applied"])
        power = system(lab, address)["PowerState"]
        try:
            expected = [m.reset for m in plan(PowerAction(action), allowed, power)]
        except Unsupported as exc:
            expected = None
            code = exc.code
        job = await run_job(client, headers, server.id or 0, "power", {"action": action})
        applied = Counter(lab.counters(address)["resets_applied"]) - before
        where = f"{_label(lab, address)} {action}"
        if expected is None:
            if (job["state"], job["error_code"]) != ("failed", code):
                problems.append(f"{where}: {job['state']} {job['error_code']}, expected {code}")
            continue
        unconfirmed = (job["state"], job["error_code"]) == ("failed", "restart_unconfirmed")
        if unconfirmed and "BootProgress" not in system(lab, address):
            # Without BootProgress a restart shows only while the power is off; a poll that
            # misses that moment must say it cannot confirm the restart, never claim it.
            pass
        elif job["state"] != "completed":
            problems.append(f"{where}: {job['state']} {job['error_code']} {job['error']}")
            continue
        if applied != Counter(expected):
            problems.append(f"{where}: applied {dict(applied)}, planned {expected}")
        reads = system(lab, address)["PowerState"]
        if action != "nmi" and reads != AFTER.get(action, "On"):
            problems.append(f"{where}: PowerState {reads}")
        shown = (await client.get(f"/api/server/{server.id}/", headers=headers)).json()
        if shown["power_state"] != reads or shown["locked_by"] is not None:
            problems.append(f"{where}: server shows {shown['power_state']} {shown['locked_by']}")
    return problems


async def test_every_power_action_on_every_flavour_and_mockup(fleet: Fleet) -> None:
    client, admin_headers = fleet.http
    assert len(mockup_dirs()) >= 1, "the shared mockups are part of this test"
    results = await asyncio.gather(
        *(_actions_on(client, admin_headers, fleet.lab, a, s) for a, s in fleet.servers.items())
    )
    assert [p for problems in results for p in problems] == []


async def test_fallbacks_show_in_the_job(fleet: Fleet) -> None:
    """iLO has no PowerCycle, AMI no GracefulRestart: the job says what it did instead."""
    client, admin_headers = fleet.http
    hpe = await run_job(
        client, admin_headers, fleet.of("hpe")[1].id or 0, "power", {"action": "power_cycle"}
    )
    ami = await run_job(
        client,
        admin_headers,
        fleet.of("supermicro")[1].id or 0,
        "power",
        {"action": "graceful_restart"},
    )
    assert hpe["state"] == ami["state"] == "completed"
    assert any("ResetType ForceOff then On" in m["text"] for m in hpe["messages"])
    assert any("ResetType GracefulShutdown then On" in m["text"] for m in ami["messages"])
    assert hpe["progress"] == ami["progress"] == 100


def _boot(lab: Lab, address: str) -> dict[str, Any]:
    boot: dict[str, Any] = system(lab, address)["Boot"]
    return boot


async def _boots_on(
    client: httpx.AsyncClient, headers: dict[str, str], lab: Lab, address: str, server: Server
) -> list[str]:
    problems: list[str] = []
    where = _label(lab, address)
    allowed_targets = _boot(lab, address).get("BootSourceOverrideTarget@Redfish.AllowableValues")
    allowed_enabled = _boot(lab, address).get("BootSourceOverrideEnabled@Redfish.AllowableValues")
    cases: list[tuple[dict[str, Any], dict[str, str] | str]] = [
        (
            {"target": "pxe"},
            {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"},
        ),
        (
            {"target": "hdd", "enabled": "continuous"},
            {
                "BootSourceOverrideTarget": "Hdd",
                "BootSourceOverrideEnabled": "Continuous"
                if allowed_enabled is None or "Continuous" in allowed_enabled
                else "Once",
            },
        ),
        (
            {"target": "bios_setup"},
            {"BootSourceOverrideTarget": "BiosSetup", "BootSourceOverrideEnabled": "Once"},
        ),
        (
            {"target": "none"},
            {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"},
        ),
    ]
    if allowed_targets is not None and "UefiHttp" in allowed_targets:
        uri = "http://boot.example/ipxe.efi"
        cases.append(
            (
                {"target": "uefi_http", "http_boot_uri": uri},
                {"BootSourceOverrideTarget": "UefiHttp", "HttpBootUri": uri}
                if "HttpBootUri" in _boot(lab, address)
                else "unsupported_boot_target",
            )
        )
    else:
        cases.append(
            ({"target": "uefi_http", "http_boot_uri": "http://x/y"}, "unsupported_boot_target")
        )
    for body, expected in cases:
        mode_before = _boot(lab, address).get("BootSourceOverrideMode")
        job = await run_job(client, headers, server.id or 0, "boot", body)
        if isinstance(expected, str):
            if (job["state"], job["error_code"]) != ("failed", expected):
                problems.append(f"{where} {body}: {job['state']} {job['error_code']}")
            continue
        if job["state"] != "completed":
            problems.append(f"{where} {body}: {job['state']} {job['error_code']} {job['error']}")
            continue
        boot = _boot(lab, address)
        wrong = {k: boot.get(k) for k, v in expected.items() if boot.get(k) != v}
        # The mode is kept when none was asked for (Supermicro would revert it otherwise).
        if wrong or boot.get("BootSourceOverrideMode") != mode_before:
            problems.append(f"{where} {body}: reads {wrong or boot.get('BootSourceOverrideMode')}")
        fell_back = expected.get("BootSourceOverrideEnabled") == "Once"
        noted = any("set Once instead" in m["text"] for m in job["messages"])
        if body.get("enabled") == "continuous" and fell_back and not noted:
            problems.append(f"{where}: the fallback to Once is not in the job's messages")
    return problems


async def test_every_boot_override_on_every_flavour_and_mockup(fleet: Fleet) -> None:
    client, admin_headers = fleet.http
    results = await asyncio.gather(
        *(_boots_on(client, admin_headers, fleet.lab, a, s) for a, s in fleet.servers.items())
    )
    assert [p for problems in results for p in problems] == []


async def test_boot_mode_is_sent_with_target_and_enabled(fleet: Fleet) -> None:
    """The AMI flavour requires If-Match; one BMC refuses a partial override: all three fields
    go in one PATCH, the mode as asked."""
    client, admin_headers = fleet.http
    lab = fleet.lab
    address, server = fleet.of("supermicro")
    lab.bmc(address).set_fault("boot_all_fields")
    try:
        job = await run_job(
            client, admin_headers, server.id or 0, "boot", {"target": "pxe", "mode": "uefi"}
        )
    finally:
        lab.bmc(address).clear_fault()
    assert job["state"] == "completed", job
    boot = _boot(lab, address)
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideMode"]) == ("Pxe", "UEFI")
    refused = await run_job(
        client,
        admin_headers,
        fleet.of("dell")[1].id or 0,
        "boot",
        {"target": "pxe", "mode": "legacy"},
    )
    # iDRAC advertises no modes but has the property: Legacy is sent and read back.
    assert refused["state"] == "completed", refused


async def test_a_one_time_pxe_boot_is_used_up_by_the_power_cycle(fleet: Fleet) -> None:
    client, admin_headers = fleet.http
    lab = fleet.lab
    for flavour in ("dell", "hpe", "supermicro", "openbmc"):
        address, server = fleet.of(flavour)
        consumed = lab.counters(address)["overrides_consumed"]
        booted = await run_job(client, admin_headers, server.id or 0, "boot", {"target": "pxe"})
        assert booted["state"] == "completed"
        assert _boot(lab, address)["BootSourceOverrideEnabled"] == "Once"
        cycled = await run_job(
            client, admin_headers, server.id or 0, "power", {"action": "power_cycle"}
        )
        assert cycled["state"] == "completed", cycled
        assert _boot(lab, address)["BootSourceOverrideEnabled"] == "Disabled"
        assert lab.counters(address)["overrides_consumed"] == consumed + 1
