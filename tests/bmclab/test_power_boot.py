"""Power and boot behaviour per flavour: reset types, transitions, overrides, counters, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from bmclab_helpers import AUTH, client, mockup_dirs

from bmclab import Lab, LabConfig
from bmclab.flavours import FLAVOURS
from tests.lab_net import LAB_NET

# power_delay=0: every transition completes before the reset's response, so reads are settled.
INSTANT = LabConfig(
    count=8,
    network=f"{LAB_NET}.214.0/24",
    latency="0",
    power_delay=0,
    power_on_holdoff=0,
    mockups=tuple(mockup_dirs()),
)
TIMED = LabConfig(
    count=8, network=f"{LAB_NET}.215.0/24", latency="0", power_delay=1.0, power_on_holdoff=600
)
# What each vendor's firmware advertises, stated as what it leaves out of the common nine.
_COMMON = {
    "ForceOff",
    "ForceOn",
    "ForceRestart",
    "GracefulRestart",
    "GracefulShutdown",
    "Nmi",
    "On",
    "PowerCycle",
    "PushPowerButton",
}
EXPECTED_RESET_TYPES = {
    "dell": _COMMON - {"ForceOn"},
    "hpe": _COMMON - {"ForceOn", "PowerCycle"},
    "supermicro": {"On", "ForceOff", "GracefulShutdown", "ForceRestart"},
    "openbmc": _COMMON - {"PushPowerButton"},
}


@pytest.fixture(scope="module")
async def instant() -> AsyncIterator[Lab]:
    async with Lab(INSTANT) as running:
        yield running


@pytest.fixture(scope="module")
async def timed() -> AsyncIterator[Lab]:
    async with Lab(TIMED) as running:
        yield running


@pytest.fixture
async def http(instant: Lab) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(instant, headers=AUTH) as session:
        yield session


class System:
    """A lab BMC's ComputerSystem, driven over HTTPS."""

    def __init__(self, lab: Lab, index: int, http: aiohttp.ClientSession) -> None:
        entry = lab.manifest[index]
        self.lab, self.index, self.http, self.base = lab, index, http, entry.url
        self.flavour = entry.flavour
        self.path = f"/redfish/v1/Systems/{entry.system_ids[0]}"

    @property
    def url(self) -> str:
        return self.base + self.path

    async def get(self) -> tuple[dict[str, Any], str]:
        async with self.http.get(self.url) as resp:
            assert resp.status == 200
            return await resp.json(), resp.headers["ETag"]

    async def reset(self, reset_type: str) -> tuple[int, dict[str, Any] | None]:
        body, _ = await self.get()
        target = body["Actions"]["#ComputerSystem.Reset"]["target"]
        async with self.http.post(self.base + target, json={"ResetType": reset_type}) as resp:
            return resp.status, (await resp.json() if resp.status >= 400 else None)

    async def patch_boot(self, boot: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _, etag = await self.get()
        headers = {"If-Match": etag}
        async with self.http.patch(self.url, json={"Boot": boot}, headers=headers) as resp:
            return resp.status, await resp.json()

    async def allowed_resets(self) -> set[str]:
        body, _ = await self.get()
        action = body["Actions"]["#ComputerSystem.Reset"]
        if "ResetType@Redfish.AllowableValues" in action:
            return set(action["ResetType@Redfish.AllowableValues"])
        async with self.http.get(self.base + action["@Redfish.ActionInfo"]) as resp:
            params = (await resp.json())["Parameters"]
        return {v for p in params if p["Name"] == "ResetType" for v in p["AllowableValues"]}


def _system(lab: Lab, http: aiohttp.ClientSession, flavour: str, nth: int = 0) -> System:
    indexes = [e.index for e in lab.manifest if e.flavour == flavour]
    return System(lab, indexes[nth], http)


def _message_id(error: dict[str, Any] | None) -> str:
    assert error is not None
    return str(error["error"]["@Message.ExtendedInfo"][0]["MessageId"])


async def test_reset_types_per_flavour(instant: Lab, http: aiohttp.ClientSession) -> None:
    for flavour, expected in EXPECTED_RESET_TYPES.items():
        system = _system(instant, http, flavour)
        body, _ = await system.get()
        action = body["Actions"]["#ComputerSystem.Reset"]
        # iDRAC and iLO list the values inline, AMI and bmcweb only through an ActionInfo.
        assert ("@Redfish.ActionInfo" in action) == (flavour in ("supermicro", "openbmc"))
        assert await system.allowed_resets() == expected, flavour
        refused = {"ForceOn", "PowerCycle", "GracefulRestart", "PushPowerButton"} - expected
        for reset_type in [*sorted(refused), "Bogus"]:
            status, error = await system.reset(reset_type)
            assert status == 400, (flavour, reset_type)
            assert _message_id(error).endswith("ActionParameterValueNotInList")
            assert error is not None
            info = error["error"]["@Message.ExtendedInfo"][0]
            assert info["MessageArgs"][:2] == [reset_type, "ResetType"]
    assert set(EXPECTED_RESET_TYPES) == set(FLAVOURS)


async def test_every_allowed_reset_lands_in_the_right_state(
    instant: Lab, http: aiohttp.ClientSession
) -> None:
    ends_off = {"ForceOff", "GracefulShutdown"}
    for flavour in FLAVOURS:
        system = _system(instant, http, flavour)
        counters = instant.bmc(system.index).counters
        for reset_type in sorted(await system.allowed_resets()):
            before = (await system.get())[0]["PowerState"]
            assert await system.reset(reset_type) == (204, None), (flavour, reset_type)
            after = (await system.get())[0]["PowerState"]
            if reset_type in ends_off:
                assert after == "Off", (flavour, reset_type)
            elif reset_type == "Nmi":
                assert after == before
            elif reset_type == "PushPowerButton":
                assert after == ("Off" if before == "On" else "On")
            else:
                assert after == "On", (flavour, reset_type)
            assert counters.resets_applied[reset_type] >= 1
        await system.reset("On")


async def test_transitions_take_time_and_graceful_takes_longer(timed: Lab) -> None:
    async with client(timed, headers=AUTH) as http:
        forced = _system(timed, http, "hpe")
        graceful = _system(timed, http, "openbmc")
        await asyncio.gather(forced.reset("ForceOff"), graceful.reset("GracefulShutdown"))
        seen_forced = await _watch_power(forced, until="Off")
        assert seen_forced[0] == "PoweringOff"
        # Started together, the graceful shutdown is still under way when the forced one ends.
        assert (await graceful.get())[0]["PowerState"] == "PoweringOff"
        assert (await _watch_power(graceful, until="Off"))[-1] == "Off"
        # The chassis follows the system.
        chassis = timed.bmc(graceful.index).store.body("/redfish/v1/Chassis/chassis")
        assert chassis["PowerState"] == "Off"
        # A restart goes off, then on, walking BootProgress through a boot.
        await forced.reset("On")
        await _watch_power(forced, until="On")
        assert await forced.reset("ForceRestart") == (204, None)
        progress: list[str] = []
        states = await _watch_power(forced, until="On", progress=progress)
        assert states[0] == "PoweringOff" and "PoweringOn" in states
        assert states.index("PoweringOff") < states.index("PoweringOn")
        assert progress[-1] == "OSRunning"
        assert "SystemHardwareInitializationComplete" in progress
        assert progress.index("SystemHardwareInitializationComplete") < len(progress) - 1


async def _watch_power(
    system: System, *, until: str, progress: list[str] | None = None
) -> list[str]:
    """Distinct PowerState values seen (in order) until `until` is read."""
    seen: list[str] = []
    for _ in range(2000):
        body, _ = await system.get()
        state = body["PowerState"]
        if not seen or seen[-1] != state:
            seen.append(state)
        last = body.get("BootProgress", {}).get("LastState")
        if progress is not None and (not progress or progress[-1] != last):
            progress.append(last)
        if state == until:
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached {until}: {seen}")


async def test_dell_refuses_on_right_after_off(timed: Lab) -> None:
    async with client(timed, headers=AUTH) as http:
        dell = _system(timed, http, "dell")
        assert await dell.reset("ForceOff") == (204, None)
        status, error = await dell.reset("On")  # while PoweringOff
        assert status == 409 and _message_id(error).endswith("ResourceInUse")
        await _watch_power(dell, until="Off")
        status, error = await dell.reset("On")  # within the hold-off after Off
        assert status == 409
        assert error is not None and "power-off" in error["error"]["message"]
        # Other vendors accept On at once.
        hpe = _system(timed, http, "hpe", 1)
        await hpe.reset("ForceOff")
        await _watch_power(hpe, until="Off")
        assert await hpe.reset("On") == (204, None)
        counters = timed.counters(dell.index)
        assert counters["reset_types"]["On"] == 2 and "On" not in counters["resets_applied"]


async def test_dell_accepts_on_after_the_holdoff(instant: Lab, http: aiohttp.ClientSession) -> None:
    dell = _system(instant, http, "dell", 1)
    await dell.reset("ForceOff")
    assert await dell.reset("On") == (204, None)  # hold-off 0 in this lab


async def test_ignore_acpi_keeps_the_power_on(instant: Lab, http: aiohttp.ClientSession) -> None:
    system = _system(instant, http, "openbmc", 1)
    bmc = instant.bmc(system.index)
    bmc.set_fault("ignore_acpi")
    try:
        for reset_type in ("GracefulShutdown", "GracefulRestart"):
            assert await system.reset(reset_type) == (204, None)
            assert (await system.get())[0]["PowerState"] == "On"
        assert bmc.counters.boots == 0
        assert await system.reset("ForceOff") == (204, None)  # the fallback works
        assert (await system.get())[0]["PowerState"] == "Off"
    finally:
        bmc.clear_fault()
        await system.reset("On")


async def test_boot_targets_match_properties(instant: Lab, http: aiohttp.ClientSession) -> None:
    needs = {
        "UefiTarget": "UefiTargetBootSourceOverride",
        "UefiHttp": "HttpBootUri",
        "UefiBootNext": "BootNext",
    }
    for entry in instant.manifest[:4]:
        boot = (await System(instant, entry.index, http).get())[0]["Boot"]
        targets = boot["BootSourceOverrideTarget@Redfish.AllowableValues"]
        for target, prop in needs.items():
            assert (target in targets) == (prop in boot), (entry.flavour, target)
    dell = _system(instant, http, "dell", 1)
    status, error = await dell.patch_boot(
        {"BootSourceOverrideTarget": "UefiTarget", "BootSourceOverrideEnabled": "Once"}
    )
    assert status == 400 and _message_id(error).endswith("PropertyValueConflict")
    status, error = await dell.patch_boot(
        {"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Once"}
    )
    assert status == 400
    uri = "http://192.0.2.10/boot.efi"
    boot = {
        "BootSourceOverrideTarget": "UefiHttp",
        "BootSourceOverrideEnabled": "Once",
        "HttpBootUri": uri,
    }
    status, body = await dell.patch_boot(boot)
    assert status == 200 and body["Boot"]["HttpBootUri"] == uri
    read = (await dell.get())[0]["Boot"]
    assert {k: read[k] for k in boot} == boot  # reads back what was set


async def test_one_time_override_is_used_by_the_next_boot(
    instant: Lab, http: aiohttp.ClientSession
) -> None:
    for flavour in FLAVOURS:
        system = _system(instant, http, flavour, 1)
        counters = instant.bmc(system.index).counters
        status, _ = await system.patch_boot(
            {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
        )
        assert status == 200, flavour
        boot = (await system.get())[0]["Boot"]
        assert boot["BootSourceOverrideTarget"] == "Pxe"
        assert boot["BootSourceOverrideEnabled"] == "Once"
        # Powering off does not boot: the override stays armed.
        await system.reset("ForceOff")
        assert (await system.get())[0]["Boot"]["BootSourceOverrideEnabled"] == "Once"
        await system.reset("On")
        body, _ = await system.get()
        assert body["Boot"]["BootSourceOverrideEnabled"] == "Disabled", flavour
        assert body["Boot"]["BootSourceOverrideTarget"] == "None"
        assert body["BootProgress"]["LastState"] == "OSRunning"
        assert counters.overrides_consumed == 1


async def test_setup_boot_and_continuous(instant: Lab, http: aiohttp.ClientSession) -> None:
    dell = _system(instant, http, "dell")
    continuous = {
        "BootSourceOverrideTarget": "BiosSetup",
        "BootSourceOverrideEnabled": "Continuous",
    }
    assert (await dell.patch_boot(continuous))[0] == 200
    for _ in range(2):
        await dell.reset("ForceRestart")
        body, _ = await dell.get()
        assert body["BootProgress"]["LastState"] == "SetupEntered"
        assert body["Boot"]["BootSourceOverrideEnabled"] == "Continuous"
    off = {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"}
    assert (await dell.patch_boot(off))[0] == 200
    # bmcweb flavour: no Continuous, a client must fall back to Once.
    openbmc = _system(instant, http, "openbmc")
    boot = (await openbmc.get())[0]["Boot"]
    assert boot["BootSourceOverrideEnabled@Redfish.AllowableValues"] == ["Disabled", "Once"]
    status, error = await openbmc.patch_boot(
        {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous"}
    )
    assert status == 400 and _message_id(error).endswith("PropertyValueNotInList")
    assert (await openbmc.get())[0]["Boot"]["BootSourceOverrideEnabled"] == "Disabled"


async def test_supermicro_patch_rules(instant: Lab, http: aiohttp.ClientSession) -> None:
    smc = _system(instant, http, "supermicro")
    full = {
        "BootSourceOverrideTarget": "Cd",
        "BootSourceOverrideEnabled": "Once",
        "BootSourceOverrideMode": "UEFI",
    }
    async with http.patch(smc.url, json={"Boot": full}) as resp:
        assert resp.status == 428 and _message_id(await resp.json()).endswith("Required")
    assert (await smc.patch_boot(full))[0] == 200
    assert (await smc.get())[0]["Boot"]["BootSourceOverrideMode"] == "UEFI"
    # Leaving the mode out puts it back to the default, as Supermicro firmware does.
    status, body = await smc.patch_boot({"BootSourceOverrideTarget": "Hdd"})
    assert status == 200 and body["Boot"]["BootSourceOverrideMode"] == "Legacy"
    # The boot_all_fields fault rejects any boot PATCH that lacks one of the three.
    hpe = _system(instant, http, "hpe")
    instant.bmc(hpe.index).set_fault("boot_all_fields")
    try:
        partial = {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
        status, error = await hpe.patch_boot(partial)
        assert status == 400 and _message_id(error).endswith("PropertyMissing")
        assert "BootSourceOverrideMode" in error["error"]["message"]
        status, _ = await hpe.patch_boot({**partial, "BootSourceOverrideMode": "UEFI"})
        assert status == 200
    finally:
        instant.bmc(hpe.index).clear_fault()
        await hpe.patch_boot({"BootSourceOverrideEnabled": "Disabled"})


async def test_counters_in_process_and_over_http(instant: Lab, http: aiohttp.ClientSession) -> None:
    system = _system(instant, http, "hpe", 1)
    bmc = instant.bmc(system.index)
    bmc.counters.clear()
    await system.reset("ForceOff")
    await system.reset("PowerCycle")  # not offered by iLO: received, refused
    await system.reset("On")
    await system.patch_boot(
        {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
    )
    counters = instant.counters(instant.manifest[system.index].address)
    target = f"{system.path}/Actions/ComputerSystem.Reset"
    assert counters["posts"] == {target: 3}
    assert counters["actions"] == {"ComputerSystem.Reset": 3}
    assert counters["reset_types"] == {"ForceOff": 1, "PowerCycle": 1, "On": 1}
    assert counters["resets_applied"] == {"ForceOff": 1, "On": 1}
    assert counters["patches"] == counters["patches_applied"] == {system.path: 1}
    assert counters["boots"] == 1 and counters["requests_served"] > 0
    async with http.get(system.base + "/bmclab/counters") as resp:
        assert resp.status == 200
        assert await resp.json() == instant.counters(system.index)
    async with http.put(system.base + "/bmclab/fault", json={"fault": "slow:0"}) as resp:
        assert resp.status == 200
    assert str(bmc.configured_fault) == "slow:0"
    async with http.put(system.base + "/bmclab/fault", json={"fault": "nonsense"}) as resp:
        assert resp.status == 400
    async with http.put(system.base + "/bmclab/fault", json={"fault": None}) as resp:
        assert resp.status == 200 and bmc.configured_fault is None
    async with http.delete(system.base + "/bmclab/counters") as resp:
        assert resp.status == 204
    assert instant.counters(system.index)["posts"] == {}


async def _post_outcome(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str:
    try:
        async with http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=1)) as resp:
            return str(resp.status)
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError:
        return "dropped"


async def test_drop_and_hang_around_a_post(instant: Lab, http: aiohttp.ClientSession) -> None:
    system = _system(instant, http, "openbmc", 1)
    bmc = instant.bmc(system.index)
    target = system.base + f"{system.path}/Actions/ComputerSystem.Reset"
    cases = [
        ("drop_before_apply:ComputerSystem.Reset", "dropped", "On"),
        ("drop_after_apply:ForceOff", "dropped", "Off"),
        ("hang_after_apply:Reset", "timeout", "Off"),
    ]
    for fault, outcome, power in cases:
        await system.reset("On")
        bmc.counters.clear()
        bmc.set_fault(fault)
        assert await _post_outcome(http, target, {"ResetType": "ForceOff"}) == outcome, fault
        assert (await system.get())[0]["PowerState"] == power, fault
        assert bmc.counters.reset_types["ForceOff"] == 1 and bmc.counters.dropped == 1
        # One-shot: the next request is answered.
        assert bmc.configured_fault is None
        assert await _post_outcome(http, target, {"ResetType": "On"}) == "204"
    # A selector that does not match leaves the request alone and the fault armed.
    bmc.set_fault("drop_after_apply:Nmi")
    assert await _post_outcome(http, target, {"ResetType": "ForceOff"}) == "204"
    assert str(bmc.configured_fault) == "drop_after_apply:Nmi"
    # A refused request applied nothing: answered, and the fault stays armed.
    bmc.set_fault("drop_after_apply:Reset")
    assert await _post_outcome(http, target, {"ResetType": "Bogus"}) == "400"
    assert str(bmc.configured_fault) == "drop_after_apply:Reset"
    bmc.clear_fault()
    # PATCH is covered too.
    bmc.set_fault("drop_after_apply:PATCH")
    with pytest.raises(aiohttp.ClientError):
        await system.patch_boot(
            {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
        )
    assert (await system.get())[0]["Boot"]["BootSourceOverrideEnabled"] == "Once"


async def test_mockups_power_and_boot(instant: Lab, http: aiohttp.ClientSession) -> None:
    mockups = [e for e in instant.manifest if e.kind == "mockup"]
    if not mockups:
        pytest.skip("no recorded mockups available")
    for entry in mockups:
        system = System(instant, entry.index, http)
        body, _ = await system.get()
        if "#ComputerSystem.Reset" not in body.get("Actions", {}) or "Boot" not in body:
            continue
        allowed = await system.allowed_resets()
        restart = next(t for t in ("ForceRestart", "PowerCycle", "GracefulRestart") if t in allowed)
        boot = {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
        targets = body["Boot"].get("BootSourceOverrideTarget@Redfish.AllowableValues", ["Pxe"])
        if "Pxe" not in targets:
            continue
        assert (await system.patch_boot(boot))[0] == 200, entry.flavour
        assert await system.reset(restart) == (204, None), entry.flavour
        body, _ = await system.get()
        assert body["PowerState"] == "On", entry.flavour
        assert body["Boot"]["BootSourceOverrideEnabled"] == "Disabled", entry.flavour
        if "BootProgress" in body:
            assert body["BootProgress"]["LastState"] == "OSRunning"


async def test_slow_fault(instant: Lab, http: aiohttp.ClientSession) -> None:
    system = _system(instant, http, "supermicro", 1)
    bmc = instant.bmc(system.index)
    bmc.set_fault("slow:60")
    try:
        with pytest.raises(TimeoutError):
            async with http.get(system.url, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
    finally:
        bmc.clear_fault()
    assert (await system.get())[0]["Id"] == "1"
