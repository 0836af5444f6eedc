"""Realism check: third-party Redfish clients drive every flavour through a session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bmclab import Lab, LabConfig
from tests.lab_net import LAB_NET

sushy = pytest.importorskip("sushy")
redfish = pytest.importorskip("redfish")

# The lab's certificates are self-signed, as on real BMCs; these clients run unverified.
pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
USER, PASSWORD = "root", "calvin"


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(LabConfig(count=4, network=f"{LAB_NET}.205.0/24", latency="0")) as running:
        yield running


def _with_sushy(url: str) -> dict[str, Any]:
    auth = sushy.auth.SessionAuth(username=USER, password=PASSWORD)
    root = sushy.Sushy(url + "/redfish/v1", verify=False, auth=auth)
    system = root.get_system()  # exactly one system per BMC
    try:
        storage = [s.identity for s in system.storage.get_members()]
    except sushy.exceptions.MissingAttributeError:
        storage = [s.identity for s in system.simple_storage.get_members()]
    result = {
        "serial": system.serial_number,
        "power": system.power_state,
        "cpus": len(system.processors.get_members()),
        "nics": [n.mac_address for n in system.ethernet_interfaces.get_members()],
        "storage": storage,
        "session": auth._session_resource_id,
    }
    auth.close()  # deletes the session on the BMC
    return result


def _with_redfish(url: str) -> dict[str, Any]:
    client = redfish.redfish_client(base_url=url, username=USER, password=PASSWORD)
    client.login(auth="session")
    try:
        systems = client.get("/redfish/v1/Systems").dict
        system_path = systems["Members"][0]["@odata.id"]
        system = client.get(system_path).dict
        out: dict[str, Any] = {"serial": system.get("SerialNumber")}
        for key in ("Processors", "EthernetInterfaces", "Storage", "SimpleStorage"):
            if key in system:
                coll = client.get(system[key]["@odata.id"])
                assert coll.status == 200, key
                members = [client.get(m["@odata.id"]) for m in coll.dict["Members"]]
                assert all(m.status == 200 for m in members), key
                out[key] = len(members)
        return out
    finally:
        client.logout()


async def test_sushy_reads_every_flavour(lab: Lab) -> None:
    for entry in lab.manifest:
        bmc = lab.bmc(entry.address)
        logins = bmc.total_logins
        result = await asyncio.to_thread(_with_sushy, entry.url)
        assert result["serial"] == entry.serial, entry.flavour
        assert result["power"] == sushy.PowerState.ON
        assert result["cpus"] >= 1 and len(result["nics"]) >= 2
        assert isinstance(result["storage"], list)
        assert result["session"]
        assert bmc.total_logins == logins + 1 and bmc.open_sessions == 0, entry.flavour


async def test_dmtf_redfish_reads_every_flavour(lab: Lab) -> None:
    for entry in lab.manifest:
        bmc = lab.bmc(entry.address)
        logins = bmc.total_logins
        result = await asyncio.to_thread(_with_redfish, entry.url)
        assert result["serial"] == entry.serial
        assert result["Processors"] >= 1 and result["EthernetInterfaces"] >= 2
        assert "Storage" in result or "SimpleStorage" in result
        assert bmc.total_logins == logins + 1 and bmc.open_sessions == 0, entry.flavour
