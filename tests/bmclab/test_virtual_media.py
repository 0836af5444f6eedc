"""Virtual media per flavour (where it lives, each vendor's quirks), the image read with Range
requests, and the fake installer: boot from the virtual CD, read the seed, call home or power
off, then boot the installed system from disk. Faults: ghost mount, unreachable image, an
installer that never finishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bmclab_helpers import AUTH, client
from media_helpers import ImageServer, image_server, installer_image, seed_image

from bmclab import Lab
from tests.deployment_helpers import install_lab_config

CONFIG = install_lab_config(8, 217, power_delay=0, power_on_holdoff=0, install_time=0.2)
# Where each vendor keeps VirtualMedia, and the slot that takes a CD.
CD_SLOT = {
    "dell": "/redfish/v1/Systems/System.Embedded.1/VirtualMedia/CD",
    "hpe": "/redfish/v1/Managers/1/VirtualMedia/2",
    "supermicro": "/redfish/v1/Systems/1/VirtualMedia/CD1",
    "openbmc": "/redfish/v1/Managers/bmc/VirtualMedia/Slot_0",
}
OTHER_SLOT = {
    "dell": "/redfish/v1/Systems/System.Embedded.1/VirtualMedia/RemovableDisk",
    "hpe": "/redfish/v1/Managers/1/VirtualMedia/1",
    "supermicro": "/redfish/v1/Systems/1/VirtualMedia/USBStick1",
    "openbmc": "/redfish/v1/Managers/bmc/VirtualMedia/Slot_1",
}


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
async def images(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ImageServer]:
    async with image_server(tmp_path_factory.mktemp("images")) as server:
        yield server


@pytest.fixture
async def http(lab: Lab) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(lab, headers=AUTH) as session:
        yield session


class Machine:
    """One lab server driven over Redfish as a deployment would."""

    def __init__(self, lab: Lab, index: int, http: aiohttp.ClientSession) -> None:
        entry = lab.manifest[index]
        self.bmc = lab.bmc(index)
        self.flavour = entry.flavour
        self.base = entry.url
        self.http = http
        self.system = f"/redfish/v1/Systems/{entry.system_ids[0]}"

    async def get(self, path: str) -> dict[str, Any]:
        async with self.http.get(self.base + path) as resp:
            assert resp.status == 200, path
            body: dict[str, Any] = await resp.json()
            return body

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        async with self.http.post(self.base + path, json=body) as resp:
            return resp.status, (await resp.json() if resp.status >= 400 else None)

    async def insert(self, slot: str, image: str, **extra: Any) -> tuple[int, str | None]:
        status, error = await self.post(
            f"{slot}/Actions/VirtualMedia.InsertMedia", {"Image": image, **extra}
        )
        message_id = error["error"]["@Message.ExtendedInfo"][0]["MessageId"] if error else None
        return status, message_id

    async def eject(self, slot: str) -> None:
        assert (await self.post(f"{slot}/Actions/VirtualMedia.EjectMedia", {}))[0] == 204

    async def boot_once(self, target: str) -> None:
        async with self.http.get(self.base + self.system) as resp:
            etag = resp.headers["ETag"]
            mode = (await resp.json())["Boot"]["BootSourceOverrideMode"]
        boot = {
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": "Once" if target != "None" else "Disabled",
            "BootSourceOverrideMode": mode,
        }
        async with self.http.patch(
            self.base + self.system, json={"Boot": boot}, headers={"If-Match": etag}
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def reset(self, reset_type: str) -> None:
        status, _ = await self.post(
            f"{self.system}/Actions/ComputerSystem.Reset", {"ResetType": reset_type}
        )
        assert status == 204, reset_type

    async def progress(self) -> str:
        return str((await self.get(self.system))["BootProgress"]["LastState"])


def _machine(lab: Lab, http: aiohttp.ClientSession, flavour: str, nth: int = 0) -> Machine:
    return Machine(lab, [e.index for e in lab.manifest if e.flavour == flavour][nth], http)


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def test_virtual_media_where_each_vendor_keeps_it(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    for flavour, slot in CD_SLOT.items():
        machine = _machine(lab, http, flavour)
        body = await machine.get(slot)
        assert set(body["MediaTypes"]) >= {"CD"}, flavour
        assert body["Inserted"] is False and body["Image"] is None
        other = await machine.get(OTHER_SLOT[flavour])
        assert "CD" not in other["MediaTypes"], flavour


async def test_vendor_quirks(lab: Lab, http: aiohttp.ClientSession, images: ImageServer) -> None:
    url = images.put("quirks.iso", installer_image(1 << 16))
    dell = _machine(lab, http, "dell")
    cd = CD_SLOT["dell"]
    # iDRAC refuses the optional parameters other BMCs want.
    for extra in ({"Inserted": True}, {"WriteProtected": True}):
        status, message_id = await dell.insert(cd, url, **extra)
        assert (status, message_id) == (400, "Base.1.8.ActionParameterNotSupported")
    assert await dell.insert(cd, url) == (204, None)
    # A slot holding an image must be ejected first.
    assert (await dell.insert(cd, url))[0] == 409
    await dell.eject(cd)
    smc = _machine(lab, http, "supermicro")
    status, message_id = await smc.insert(CD_SLOT["supermicro"], url + "?token=x")
    assert (status, message_id) == (400, "Base.1.8.ActionParameterValueFormatError")
    assert await smc.insert(CD_SLOT["supermicro"], url) == (204, None)
    # One image at a time: the USB slot refuses while the CD holds one.
    assert (await smc.insert(OTHER_SLOT["supermicro"], url))[0] == 409
    await smc.eject(CD_SLOT["supermicro"])
    assert await smc.insert(OTHER_SLOT["supermicro"], url) == (204, None)
    await smc.eject(OTHER_SLOT["supermicro"])
    # The others take both parameters, and a second medium beside the CD.
    for flavour in ("hpe", "openbmc"):
        machine = _machine(lab, http, flavour)
        assert await machine.insert(CD_SLOT[flavour], url, Inserted=True, WriteProtected=True) == (
            204,
            None,
        )
        assert await machine.insert(OTHER_SLOT[flavour], url) == (204, None)
        await machine.eject(CD_SLOT[flavour])
        await machine.eject(OTHER_SLOT[flavour])


@pytest.mark.parametrize("flavour", sorted(CD_SLOT))
async def test_install_from_virtual_cd(
    lab: Lab, http: aiohttp.ClientSession, images: ImageServer, flavour: str
) -> None:
    machine = _machine(lab, http, flavour)
    counters = machine.bmc.counters
    image = installer_image()
    url = images.put(f"{flavour}/ubuntu-24.04.iso", image)
    seed = seed_image(f"{flavour}-web", images.call_home_url(flavour))
    cd = CD_SLOT[flavour]
    if flavour == "supermicro":
        images.put(f"{flavour}/cidata.iso", seed)  # one slot: the seed sits beside the image
    else:
        seed_url = images.put(f"{flavour}-seed.iso", seed)
        assert await machine.insert(OTHER_SLOT[flavour], seed_url) == (204, None)
    images.ranges.clear()
    assert await machine.insert(cd, url) == (204, None)
    assert (await machine.get(cd))["Inserted"] is True
    await machine.boot_once("Cd")
    await machine.reset("ForceRestart")
    assert await machine.progress() == "OSBootStarted"
    # The installer counts a call home once it has read the answer, after the image server saw it.
    await _until(lambda: counters.calls_home == 1, "call home")
    form = next(form for name, form in images.calls if name == flavour)
    assert form["instance_id"] == f"{flavour}-web-iid" and form["hostname"] == f"{flavour}-web"
    # Read in Range pieces: the probe, then the whole image chunk by chunk, then the seed.
    assert all(r.startswith("bytes=") for r in images.ranges)
    assert counters.media_bytes >= len(image)
    assert counters.seeds_read == 1 and counters.calls_home == 1
    # Finalise as a deployment does: off, eject, boot from disk.
    await machine.reset("ForceOff")
    await machine.eject(cd)
    if flavour != "supermicro":
        await machine.eject(OTHER_SLOT[flavour])
    await machine.reset("On")
    system = await machine.get(machine.system)
    assert system["BootProgress"]["LastState"] == "OSRunning"
    assert system["HostName"] == f"{flavour}-web"
    assert counters.deployed_os == "ubuntu-24.04.iso"


async def test_installer_without_call_home_powers_off(
    lab: Lab, http: aiohttp.ClientSession, images: ImageServer
) -> None:
    machine = _machine(lab, http, "openbmc", 1)
    url = images.put("poweroff/installer.iso", installer_image(1 << 16))
    images.put("poweroff/cidata.iso", seed_image("quiet", None, power_off=True))
    assert await machine.insert(CD_SLOT["openbmc"], url) == (204, None)
    await machine.boot_once("Cd")
    await machine.reset("ForceRestart")
    body = await machine.get(machine.system)
    assert body["PowerState"] == "On" and body["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
    await _until(lambda: machine.bmc.counters.deployed_os == "installer.iso", "install")
    await _until(lambda: machine.bmc.store.body(machine.system)["PowerState"] == "Off", "power off")
    assert machine.bmc.counters.calls_home == 0
    await machine.eject(CD_SLOT["openbmc"])


async def test_ghost_mount_mounts_nothing_then_works(
    lab: Lab, http: aiohttp.ClientSession, images: ImageServer
) -> None:
    machine = _machine(lab, http, "hpe", 1)
    url = images.put("ghost.iso", installer_image(1 << 16))
    machine.bmc.set_fault("ghost_mount:2")
    try:
        for _ in range(2):
            assert await machine.insert(CD_SLOT["hpe"], url) == (204, None)
            assert (await machine.get(CD_SLOT["hpe"]))["Inserted"] is False
        assert await machine.insert(CD_SLOT["hpe"], url) == (204, None)
        assert (await machine.get(CD_SLOT["hpe"]))["Image"] == url
        assert machine.bmc.counters.ghost_mounts == 2
    finally:
        machine.bmc.clear_fault()
        await machine.eject(CD_SLOT["hpe"])


async def test_unreachable_image_is_refused(
    lab: Lab, http: aiohttp.ClientSession, images: ImageServer
) -> None:
    machine = _machine(lab, http, "dell", 1)
    missing = f"{images.base}/files/not-there.iso"
    status, message_id = await machine.insert(CD_SLOT["dell"], missing)
    assert (status, message_id) == (400, "Base.1.8.CouldNotEstablishConnection")
    url = images.put("fine.iso", installer_image(1 << 16))
    machine.bmc.set_fault("image_unreachable")
    try:
        assert (await machine.insert(CD_SLOT["dell"], url))[1] == (
            "Base.1.8.CouldNotEstablishConnection"
        )
        assert (await machine.get(CD_SLOT["dell"]))["Inserted"] is False
    finally:
        machine.bmc.clear_fault()


async def test_installer_that_never_finishes(
    lab: Lab, http: aiohttp.ClientSession, images: ImageServer, tmp_path: Path
) -> None:
    machine = _machine(lab, http, "supermicro", 1)
    counters = machine.bmc.counters
    url = images.put("hang/installer.iso", installer_image(1 << 16))
    images.put("hang/cidata.iso", seed_image("hang", images.call_home_url("hang")))
    machine.bmc.set_fault("installer_hang")
    try:
        assert await machine.insert(CD_SLOT["supermicro"], url) == (204, None)
        await machine.boot_once("Cd")
        await machine.reset("ForceRestart")
        await _until(lambda: counters.installer_stuck == 1, "installer stuck")
        assert await machine.progress() == "OSBootStarted"
        assert counters.seeds_read == 1 and counters.deployed_os is None
        # Power goes, the installer with it; a boot from disk finds no installed system.
        await machine.reset("ForceOff")
        await machine.eject(CD_SLOT["supermicro"])
        await machine.reset("On")
        assert await machine.progress() == "OSRunning"
        assert counters.calls_home == 0 and not any(n == "hang" for n, _ in images.calls)
    finally:
        machine.bmc.clear_fault()
