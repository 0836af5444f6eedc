"""Synthetic flavours: trees, determinism, ETags, actions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from bmclab_helpers import AUTH, client, walk

from bmclab import Lab, LabConfig
from bmclab.flavours import FLAVOURS
from tests.lab_net import LAB_NET
from tests.local_http import serving

NETWORK = f"{LAB_NET}.201.0/24"
CONFIG = LabConfig(
    count=8,
    network=NETWORK,
    latency="0",
    seed=7,
    power_delay=0.05,
    power_on_holdoff=0,
    task_duration=0.2,
)


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(CONFIG) as running:
        yield running


@pytest.fixture
async def http(lab: Lab) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(lab, headers=AUTH) as session:
        yield session


def _system_path(lab: Lab, index: int) -> str:
    entry = lab.manifest[index]
    return f"/redfish/v1/Systems/{entry.system_ids[0]}"


async def test_every_flavour_walks_cleanly(lab: Lab, http: aiohttp.ClientSession) -> None:
    assert {e.flavour for e in lab.manifest} == set(FLAVOURS)
    for entry in lab.manifest:
        tree = await walk(http, entry.url)
        bad = {path: status for path, (status, _) in tree.items() if status != 200}
        assert not bad, f"{entry.flavour}: {bad}"
        assert len(tree) > 20
        system = tree[_system_path(lab, entry.index)][1]
        for key in ("UUID", "SerialNumber", "BiosVersion", "PowerState", "HostName"):
            assert key in system, (entry.flavour, key)
        assert system["SerialNumber"] == entry.serial
        assert 1 <= system["ProcessorSummary"]["Count"] <= 2
        # Every collection's count matches its members.
        for path, (_, body) in tree.items():
            if isinstance(body, dict) and "Members" in body:
                assert body["Members@odata.count"] == len(body["Members"]), path


async def test_flavour_shapes(lab: Lab, http: aiohttp.ClientSession) -> None:
    by_flavour = {e.flavour: e for e in lab.manifest}
    dell = await walk(http, by_flavour["dell"].url)
    assert "/redfish/v1/Systems/System.Embedded.1/VirtualMedia/CD" in dell
    assert "/redfish/v1/Systems/System.Embedded.1/Storage/RAID.Integrated.1-1" in dell
    assert any(p.startswith("/redfish/v1/UpdateService/FirmwareInventory/Installed-") for p in dell)
    assert "Dell" in dell["/redfish/v1/Systems/System.Embedded.1"][1]["Oem"]
    hpe = await walk(http, by_flavour["hpe"].url)
    assert "/redfish/v1/Systems/1/Storage/DE00A000/Controllers" in hpe
    assert hpe["/redfish/v1/Systems/1"][1]["Manufacturer"] == "HPE"
    smc = await walk(http, by_flavour["supermicro"].url)
    system = smc["/redfish/v1/Systems/1"][1]
    assert system["SKU"] in ("Default string", "To Be Filled By O.E.M.")
    assert system["Model"].endswith(" ")
    assert "VirtualMedia" in system and ("SimpleStorage" in system or "Storage" in system)
    macs = [b["MACAddress"] for p, (_, b) in smc.items() if "/EthernetInterfaces/" in p]
    assert macs and all(m == m.upper() for m in macs)
    obmc = await walk(http, by_flavour["openbmc"].url)
    assert "/redfish/v1/Managers/bmc" in obmc
    assert "/redfish/v1/UpdateService/SoftwareInventory" in obmc
    assert "Actions" not in obmc["/redfish/v1/UpdateService"][1]


async def test_sizes_within_ranges_and_serials_unique(lab: Lab) -> None:
    serials = [e.serial for e in lab.manifest]
    assert len(set(serials)) == len(serials)
    for bmc in lab.bmcs:
        store = bmc.store
        system = store.body(_system_path(lab, bmc.index))
        mem = store.body(system["Memory"]["@odata.id"])["Members@odata.count"]
        nics = store.body(system["EthernetInterfaces"]["@odata.id"])["Members@odata.count"]
        assert 4 <= mem <= 32 and 2 <= nics <= 6
        update = store.body("/redfish/v1/UpdateService")
        inventory = update.get("FirmwareInventory") or update["SoftwareInventory"]
        assert 5 <= store.body(inventory["@odata.id"])["Members@odata.count"] <= 25


async def test_same_seed_same_manifest(lab: Lab) -> None:
    again = Lab(CONFIG).build()  # trees and manifest only, no sockets
    assert again == lab.manifest
    other = Lab(LabConfig(count=8, network=NETWORK, latency="0", seed=8)).build()
    assert [e.serial for e in other] != [e.serial for e in lab.manifest]


async def test_etag_and_if_match(lab: Lab, http: aiohttp.ClientSession) -> None:
    index = next(e.index for e in lab.manifest if e.flavour == "supermicro")  # If-Match required
    url = lab.manifest[index].url + _system_path(lab, index)
    async with http.get(url) as resp:
        etag = resp.headers["ETag"]
    patch = {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
    async with http.patch(url, json=patch) as resp:
        assert resp.status == 428
        assert "error" in await resp.json()
    async with http.patch(url, json=patch, headers={"If-Match": '"nope"'}) as resp:
        assert resp.status == 412
    async with http.patch(url, json=patch, headers={"If-Match": etag}) as resp:
        assert resp.status == 200
        body = await resp.json()
        assert body["Boot"]["BootSourceOverrideTarget"] == "Pxe"
        assert resp.headers["ETag"] != etag
    # The old ETag is now stale.
    async with http.patch(url, json=patch, headers={"If-Match": etag}) as resp:
        assert resp.status == 412
    bad = {"Boot": {"BootSourceOverrideTarget": "Bogus"}}
    async with http.patch(url, json=bad, headers={"If-Match": "*"}) as resp:
        assert resp.status == 400
    # Without the precondition rule (Dell), no If-Match is fine and a stale one still fails.
    dell = lab.manifest[0].url + _system_path(lab, 0)
    async with http.patch(dell, json=patch) as resp:
        assert resp.status == 200
    async with http.patch(dell, json=patch, headers={"If-Match": etag}) as resp:
        assert resp.status == 412


async def test_reset_changes_power_state(lab: Lab, http: aiohttp.ClientSession) -> None:
    for index in range(4):  # inline allowable values and ActionInfo flavours alike
        system_url = lab.manifest[index].url + _system_path(lab, index)
        async with http.get(system_url) as resp:
            target = (await resp.json())["Actions"]["#ComputerSystem.Reset"]["target"]
        base = lab.manifest[index].url
        async with http.post(base + target, json={"ResetType": "ForceOff"}) as resp:
            assert resp.status == 204
        assert await _eventually_power(http, system_url, "Off")
        async with http.post(base + target, json={"ResetType": "On"}) as resp:
            assert resp.status == 204
        assert await _eventually_power(http, system_url, "On")
        async with http.post(base + target, json={"ResetType": "Bogus"}) as resp:
            assert resp.status == 400


async def _eventually_power(http: aiohttp.ClientSession, url: str, state: str) -> bool:
    for _ in range(100):
        async with http.get(url) as resp:
            if (await resp.json())["PowerState"] == state:
                return True
        await asyncio.sleep(0.02)
    return False


async def test_virtual_media_insert_and_eject(
    lab: Lab, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "boot.iso").write_bytes(b"\0" * 4096)
    app = web.Application()
    app.router.add_static("/", tmp_path)
    async with serving(app) as base:
        await _insert_and_eject(lab, http, f"{base}/boot.iso")


async def _insert_and_eject(lab: Lab, http: aiohttp.ClientSession, image: str) -> None:
    for entry in lab.manifest[:4]:
        store = lab.bmc(entry.index).store
        vm_coll = next(p for p in store if p.endswith("/VirtualMedia"))
        vm = store.body(vm_coll)["Members"][0]["@odata.id"]
        actions = store.body(vm)["Actions"]
        insert = actions["#VirtualMedia.InsertMedia"]["target"]
        eject = actions["#VirtualMedia.EjectMedia"]["target"]
        async with http.post(entry.url + insert, json={"Image": image}) as resp:
            assert resp.status == 204
        async with http.get(entry.url + vm) as resp:
            body = await resp.json()
            assert body["Inserted"] is True and body["Image"] == image
        async with http.post(entry.url + eject, json={}) as resp:
            assert resp.status == 204
        async with http.get(entry.url + vm) as resp:
            body = await resp.json()
            assert body["Inserted"] is False and body["Image"] is None
