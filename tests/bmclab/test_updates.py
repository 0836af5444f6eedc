"""The lab's UpdateService per flavour: vendor shapes, real image downloads (HEAD + Range),
versions that change only when the update would take effect, BMC self-restarts, and faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from bmclab_helpers import AUTH, client

from bmclab import Lab, LabConfig
from bmclab.updates import build_image, component_entry, parse_image
from services.cli import main as racksmith
from tests.lab_net import LAB_NET
from tests.local_http import serving

CONFIG = LabConfig(
    count=8,  # two of each flavour: dell, hpe, supermicro, openbmc
    network=f"{LAB_NET}.209.0/24",
    latency="0",
    seed=3,
    power_delay=0.05,
    power_on_holdoff=0,
    task_duration=0.2,
    bmc_reset_time=0.6,
)
SERVICE = "/redfish/v1/UpdateService"


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(CONFIG) as running:
        yield running


@pytest.fixture
async def http(lab: Lab) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(lab, headers=AUTH) as session:
        yield session


@pytest.fixture
async def images(tmp_path: Path) -> AsyncIterator[tuple[str, list[tuple[str, str | None]]]]:
    """A file server for images; the requests it saw as (method, Range)."""
    seen: list[tuple[str, str | None]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.method, request.headers.get("Range")))
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    app.router.add_static("/img", tmp_path)
    async with serving(app) as url:
        yield f"{url}/img", seen


def _index(lab: Lab, flavour: str, nth: int = 0) -> int:
    return [e.index for e in lab.manifest if e.flavour == flavour][nth]


def _image(tmp: Path, name: str, manufacturer: str, component: str, version: str) -> str:
    (tmp / name).write_bytes(build_image(manufacturer, component, version, size=200_000))
    return name


async def _task(http: aiohttp.ClientSession, url: str, until: tuple[str, ...]) -> dict[str, Any]:
    for _ in range(300):
        async with http.get(url) as resp:
            task: dict[str, Any] = await resp.json()
        if task["TaskState"] in until:
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task stayed {task['TaskState']}")


def _other(bmc: Any) -> tuple[str, str]:
    """A running entry that is neither the BIOS nor the BMC: (name, path)."""
    skip = {component_entry(bmc, "BIOS"), component_entry(bmc, "BMC")}
    for member in bmc.store.body(
        bmc.store.body(SERVICE)[
            "FirmwareInventory"
            if "FirmwareInventory" in bmc.store.body(SERVICE)
            else "SoftwareInventory"
        ]["@odata.id"]
    )["Members"]:
        path = member["@odata.id"]
        name = str(bmc.store.body(path)["Name"])
        if path not in skip and component_entry(bmc, name) == path:
            return name, path
    raise AssertionError("no other component")


def _version(lab: Lab, index: int, entry: str) -> str:
    return str(lab.bmc(index).store.body(entry)["Version"])


def _push_form(data: bytes, targets: list[str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("UpdateParameters", f'{{"Targets": {targets!r}}}'.replace("'", '"'))
    form.add_field("UpdateFile", data, filename="image.bin")
    return form


async def test_image_command_writes_what_the_lab_accepts(tmp_path: Path) -> None:
    out = tmp_path / "bios.bin"
    code = racksmith(
        [
            "lab",
            "firmware-image",
            "--manufacturer",
            "Dell Inc.",
            "--component",
            "BIOS",
            "--version",
            "2.19.1",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    image = parse_image(out.read_bytes())
    assert image is not None
    assert (image.manufacturer, image.component, image.version) == ("Dell Inc.", "BIOS", "2.19.1")
    assert parse_image(b"MZ\x90\x00 not a lab image") is None


async def test_dell_push_stages_bios_until_the_host_reboots(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    index = _index(lab, "dell")
    bmc, url = lab.bmc(index), lab.manifest[index].url
    push = bmc.store.body(SERVICE)["MultipartHttpPushUri"]
    bios = component_entry(bmc, "BIOS")
    assert bios is not None and "Installed-" in bios
    before = _version(lab, index, bios)
    data = build_image("Dell Inc.", "BIOS", "9.9.9")
    # One component per request, as iDRAC demands.
    async with http.post(url + push, data=_push_form(data, [bios, bios + "x"])) as resp:
        assert resp.status == 400
    async with http.post(url + push, data=_push_form(data, [bios])) as resp:
        assert resp.status == 202
        location = resp.headers["Location"]
    assert location.startswith("/redfish/v1/TaskService/Tasks/JID_")
    task = await _task(http, url + location, ("Completed", "Exception"))
    assert task["TaskState"] == "Completed"
    assert "next host reboot" in task["Messages"][0]["Message"]
    assert _version(lab, index, bios) == before  # staged, not running
    system = f"/redfish/v1/Systems/{lab.manifest[index].system_ids[0]}"
    reset = f"{system}/Actions/ComputerSystem.Reset"
    async with http.post(url + reset, json={"ResetType": "ForceRestart"}) as resp:
        assert resp.status == 204
    for _ in range(200):
        if _version(lab, index, bios) == "9.9.9":
            break
        await asyncio.sleep(0.02)
    assert _version(lab, index, bios) == "9.9.9"
    assert bmc.store.body(system)["BiosVersion"] == "9.9.9"


async def test_hpe_pulls_with_ranges_and_reports_in_oem_state(
    lab: Lab,
    http: aiohttp.ClientSession,
    images: tuple[str, list[tuple[str, str | None]]],
    tmp_path: Path,
) -> None:
    base, seen = images
    index = _index(lab, "hpe")
    bmc, url = lab.bmc(index), lab.manifest[index].url
    action = f"{SERVICE}/Actions/UpdateService.SimpleUpdate"
    ilo = component_entry(bmc, "BMC")
    assert ilo is not None
    name = _image(tmp_path, "ilo5_312.bin", "HPE", "BMC", "3.12 Mar 01 2026")
    async with http.post(url + action, json={"ImageURI": f"{base}/{name}"}) as resp:
        assert resp.status == 200  # iLO answers 200 and starts no task
    states: list[str] = []
    refused = 0
    for _ in range(400):
        try:
            async with http.get(url + SERVICE) as resp:
                states.append((await resp.json())["Oem"]["Hpe"]["State"])
        except aiohttp.ClientConnectionError:
            refused += 1  # iLO restarting after flashing itself
        if _version(lab, index, ilo) == "3.12 Mar 01 2026" and not bmc.updates.resetting:
            break
        await asyncio.sleep(0.02)
    assert _version(lab, index, ilo) == "3.12 Mar 01 2026"
    assert "Writing" in states and "Complete" in states
    assert refused >= 2
    # Downloaded as a BMC does: HEAD for the size, then byte ranges.
    assert seen[0] == ("HEAD", None)
    assert [r for m, r in seen[1:]] == ["bytes=0-1048575"]
    # A .fwpkg is accepted and flashes nothing (iLO 5).
    (tmp_path / "bios.fwpkg").write_bytes(build_image("HPE", "BIOS", "U46 v9.99 (01/01/2026)"))
    async with http.post(url + action, json={"ImageURI": f"{base}/bios.fwpkg"}) as resp:
        assert resp.status == 200
    await asyncio.sleep(0.3)
    assert all(method != "GET" or "fwpkg" not in str(r) for method, r in seen)
    assert len(seen) == 2


async def test_supermicro_task_in_message_args_waits_for_start_update(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    index = _index(lab, "supermicro")
    bmc, url = lab.bmc(index), lab.manifest[index].url
    service = bmc.store.body(SERVICE)
    name, cpld = _other(bmc)
    data = build_image("Supermicro", name, "4.5.6")
    async with http.post(url + service["MultipartHttpPushUri"], data=_push_form(data, [])) as resp:
        assert resp.status == 202
        assert "Location" not in resp.headers
        body = await resp.json()
    (info,) = body["Accepted"]["@Message.ExtendedInfo"]
    (task_path,) = info["MessageArgs"]
    await asyncio.sleep(0.5)
    async with http.get(url + task_path) as resp:
        assert (await resp.json())["TaskState"] == "New"  # staged, not failed
    start = service["Actions"]["#UpdateService.StartUpdate"]["target"]
    async with http.post(url + start, json={}) as resp:
        assert resp.status == 202
    task = await _task(http, url + task_path, ("Completed", "Exception"))
    assert task["TaskState"] == "Completed"
    assert _version(lab, index, cpld) == "4.5.6"  # neither BIOS nor BMC: no reboot needed

    other = lab.bmc(_index(lab, "supermicro", 1))
    other.set_fault("nolicence")
    try:
        async with http.post(
            lab.manifest[other.index].url + service["MultipartHttpPushUri"],
            data=_push_form(data, []),
        ) as resp:
            assert resp.status == 403
            error = (await resp.json())["error"]["@Message.ExtendedInfo"][0]
            assert error["MessageId"] == "SMC.1.0.OemLicenseNotPassed"
    finally:
        other.clear_fault()


async def test_openbmc_push_only_task_in_body(lab: Lab, http: aiohttp.ClientSession) -> None:
    index = _index(lab, "openbmc")
    bmc, url = lab.bmc(index), lab.manifest[index].url
    service = bmc.store.body(SERVICE)
    assert "Actions" not in service
    name, entry = _other(bmc)
    data = build_image("", name, "1.2.3")
    async with http.post(url + service["MultipartHttpPushUri"], data=_push_form(data, [])) as resp:
        assert resp.status == 202
        assert "Location" not in resp.headers
        task_path = (await resp.json())["@odata.id"]
    await _task(http, url + task_path, ("Completed",))
    assert _version(lab, index, entry) == "1.2.3"


@pytest.mark.parametrize(
    ("fault", "state", "message_id", "applied"),
    [
        ("update_fail", "Exception", "Update.1.0.ApplyFailed", False),
        ("update_noop", "Completed", "Update.1.1.UpdateSuccessful", False),
        ("update_unreachable", "Exception", "Update.1.0.TransferFailed", False),
        (None, "Completed", "Update.1.1.UpdateSuccessful", True),
    ],
)
async def test_faults(
    lab: Lab,
    http: aiohttp.ClientSession,
    images: tuple[str, list[tuple[str, str | None]]],
    tmp_path: Path,
    fault: str | None,
    state: str,
    message_id: str,
    applied: bool,
) -> None:
    base, _ = images
    index = _index(lab, "dell", 1)
    bmc, url = lab.bmc(index), lab.manifest[index].url
    name, entry = _other(bmc)
    version = f"7.7.{len(fault or '')}"
    image = _image(tmp_path, "cpld.bin", "Dell Inc.", name, version)
    action = f"{SERVICE}/Actions/UpdateService.SimpleUpdate"
    bmc.set_fault(fault)
    try:
        async with http.post(url + action, json={"ImageURI": f"{base}/{image}"}) as resp:
            assert resp.status == 202
            location = resp.headers["Location"]
        task = await _task(http, url + location, ("Completed", "Exception"))
    finally:
        bmc.clear_fault()
    assert (task["TaskState"], task["Messages"][0]["MessageId"]) == (state, message_id)
    assert (_version(lab, index, entry) == version) is applied


async def test_stall_and_foreign_images(
    lab: Lab, http: aiohttp.ClientSession, images: tuple[str, Any], tmp_path: Path
) -> None:
    base, _ = images
    index = _index(lab, "dell", 1)
    bmc, url = lab.bmc(index), lab.manifest[index].url
    action = f"{SERVICE}/Actions/UpdateService.SimpleUpdate"
    _image(tmp_path, "hpe.bin", "HPE", "BIOS", "U46 v9.9 (01/01/2026)")
    async with http.post(url + action, json={"ImageURI": f"{base}/hpe.bin"}) as resp:
        location = resp.headers["Location"]
    task = await _task(http, url + location, ("Completed", "Exception"))
    assert task["Messages"][0]["MessageId"] == "Update.1.0.InvalidImage"

    _image(tmp_path, "bios.bin", "Dell Inc.", "BIOS", "8.8.8")
    bmc.set_fault("update_stall")
    try:
        async with http.post(url + action, json={"ImageURI": f"{base}/bios.bin"}) as resp:
            location = resp.headers["Location"]
        await asyncio.sleep(1.0)  # five task durations
        async with http.get(url + location) as resp:
            task = await resp.json()
        assert (task["TaskState"], task["PercentComplete"]) == ("Running", 50)
    finally:
        bmc.clear_fault()
