"""Reading UpdateServices: the method each BMC offers, SimpleUpdate parameters from ActionInfo,
the task wherever the vendor puts it (against the lab's vendor shapes), and task states."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from inventory_helpers import mockup_dirs
from redfish_helpers import lab_config, open_session

from bmclab import Lab
from bmclab.flavours import FLAVOURS, build_tree
from bmclab.updates import build_image
from shared.redfish import RedfishPool
from shared.redfish.updates import (
    Phase,
    TaskProgress,
    UnfillableParameter,
    UpdateCapabilities,
    UpdateMethod,
    hpe_update_state,
    simple_update_body,
    task_reference,
)
from tests.lab_net import LAB_NET
from tests.local_http import serving

SERVICE = "/redfish/v1/UpdateService"
MOCKUPS = {path.name: path for path in mockup_dirs()}
LAB_METHODS = {
    "dell": UpdateMethod.multipart_push,
    "hpe": UpdateMethod.simple_update,  # its push URI is /cgi-bin/uploadFile
    "supermicro": UpdateMethod.multipart_push,
    "openbmc": UpdateMethod.multipart_push,
}
RECORDED_METHODS = {
    "dmtf-public-rackmount1": UpdateMethod.simple_update,  # HttpPushUri /FWUpdate: not Redfish
    "dmtf-public-tower": UpdateMethod.simple_update,
    "gigabyte-h262-z63-ami": UpdateMethod.simple_update,
    "hpe-ilo5-apollo-xl675d-gen10plus": UpdateMethod.simple_update,
    "hpe-ilo5-proliant-dl360-gen10plus": UpdateMethod.simple_update,
    "hpe-ilo6-proliant-dl380a-gen11": UpdateMethod.simple_update,
    "hpe-ilo7-proliant-dl360-gen12": UpdateMethod.simple_update,
    "intel-s2600bpb": UpdateMethod.simple_update,
    "openbmc-bmcweb-stock": UpdateMethod.multipart_push,
}


def _recorded(name: str, path: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((MOCKUPS[name] / path.strip("/") / "index.json").read_text())
    return body


@pytest.mark.parametrize("flavour", sorted(LAB_METHODS))
def test_lab_flavour_methods(flavour: str) -> None:
    tree = build_tree(
        FLAVOURS[flavour], seed=1, index=0, address="127.0.0.1", serial="S", session_timeout=60
    )
    capabilities = UpdateCapabilities.parse(tree.resources[SERVICE])
    assert capabilities.method() == LAB_METHODS[flavour]
    assert (capabilities.start_update is not None) == (flavour == "supermicro")
    assert capabilities.hpe_progress == (flavour == "hpe")
    # An image larger than the BMC takes cannot be pushed; it may still be pulled.
    too_big = (capabilities.max_image_bytes or 0) + 1
    expected = UpdateMethod.simple_update if flavour != "openbmc" else None
    assert capabilities.method(too_big) == expected


@pytest.mark.skipif(not MOCKUPS, reason="the recorded mockups are not available")
@pytest.mark.parametrize("name", sorted(RECORDED_METHODS))
def test_recorded_methods(name: str) -> None:
    capabilities = UpdateCapabilities.parse(_recorded(name, SERVICE))
    assert capabilities.method() == RECORDED_METHODS[name]


@pytest.mark.skipif(not MOCKUPS, reason="the recorded mockups are not available")
def test_simple_update_parameters_from_action_info() -> None:
    ami = UpdateCapabilities.parse(_recorded("gigabyte-h262-z63-ami", SERVICE))
    assert ami.simple_update == "/redfish/v1/UpdateService/Actions/SimpleUpdate"
    info = _recorded("gigabyte-h262-z63-ami", str(ami.simple_update_info))
    body = simple_update_body("http://10.0.0.1/a/x/BIOS.bin", ami, info, component="BIOS")
    # AMI requires TransferProtocol; UpdateComponent names what is flashed.
    assert body == {
        "ImageURI": "http://10.0.0.1/a/x/BIOS.bin",
        "TransferProtocol": "HTTP",
        "UpdateComponent": "BIOS",
    }
    with pytest.raises(UnfillableParameter, match="HTTPS"):
        simple_update_body("https://10.0.0.1/a/x/BIOS.bin", ami, info)

    dmtf = UpdateCapabilities.parse(_recorded("dmtf-public-rackmount1", SERVICE))
    info = _recorded("dmtf-public-rackmount1", str(dmtf.simple_update_info))
    # Optional TransferProtocol is left out (the URI says it); Targets are not listed: not sent.
    assert simple_update_body("http://h/i.bin", dmtf, info, targets=["/x"]) == {
        "ImageURI": "http://h/i.bin"
    }
    hpe = UpdateCapabilities.parse(_recorded("hpe-ilo6-proliant-dl380a-gen11", SERVICE))
    assert simple_update_body("http://h/i.bin", hpe, None, targets=["/x"]) == {
        "ImageURI": "http://h/i.bin",
        "Targets": ["/x"],
    }
    required = {"Parameters": [{"Name": "Username", "Required": True}]}
    with pytest.raises(UnfillableParameter, match="Username"):
        simple_update_body("http://h/i.bin", hpe, required)


@pytest.mark.parametrize(
    ("task", "phase"),
    [
        ({"TaskState": "New"}, Phase.pending),  # staged (Supermicro before StartUpdate)
        ({"TaskState": "Pending"}, Phase.pending),
        ({"TaskState": "Starting"}, Phase.pending),
        ({"TaskState": "Running", "PercentComplete": 40}, Phase.running),
        ({"TaskState": "Completed", "TaskStatus": "OK"}, Phase.completed),
        ({"TaskState": "Completed", "TaskStatus": "Critical"}, Phase.failed),
        ({"TaskState": "Exception"}, Phase.failed),
        ({"TaskState": "Killed"}, Phase.failed),
        ({"TaskState": "Cancelled"}, Phase.failed),
        ({"TaskState": "SomethingNew"}, Phase.pending),
        ({}, Phase.pending),
    ],
)
def test_task_phases(task: dict[str, Any], phase: Phase) -> None:
    assert TaskProgress.parse(task).phase == phase


def test_task_reason_and_hpe_states() -> None:
    failed = TaskProgress.parse(
        {
            "TaskState": "Exception",
            "Messages": [{"MessageId": "Update.1.0.TransferFailed", "Message": "Transfer failed."}],
        }
    )
    assert failed.reason == "Transfer failed. (Update.1.0.TransferFailed)"
    assert hpe_update_state({"Oem": {"Hpe": {"State": "Writing", "FlashProgressPercent": 40}}}) == (
        Phase.running,
        40,
    )
    assert hpe_update_state({"Oem": {"Hpe": {"State": "Idle"}}}) == (Phase.idle, None)
    assert hpe_update_state({"Oem": {"Hpe": {"State": "Error"}}}) == (Phase.failed, None)
    assert hpe_update_state({}) is None


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(lab_config(f"{LAB_NET}.211.0/24", count=4, task_duration=0.2)) as running:
        yield running


@pytest.fixture
async def image_url(tmp_path: Path) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_static("/a", tmp_path)
    for manufacturer in ("Dell Inc.", "HPE", "Supermicro"):
        data = build_image(manufacturer, "BIOS", "9.9.9")
        (tmp_path / f"{manufacturer.split()[0]}.bin").write_bytes(data)
    async with serving(app) as url:
        yield f"{url}/a"


async def _until(session: Any, path: str, done: set[Phase], hpe: bool = False) -> Phase:
    for _ in range(300):
        body = await session.get(path)
        state = hpe_update_state(body) if hpe else None
        phase = state[0] if state else TaskProgress.parse(body).phase
        if phase in done:
            return phase
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} stayed {phase}")


async def test_tasks_found_wherever_each_vendor_puts_them(lab: Lab, image_url: str) -> None:
    pool = RedfishPool()
    action = f"{SERVICE}/Actions/UpdateService.SimpleUpdate"
    by_flavour = {e.flavour: e for e in lab.manifest}
    # iDRAC: Location.
    async with open_session(pool, by_flavour["dell"].url) as dell:
        started = await dell.post(action, {"ImageURI": f"{image_url}/Dell.bin"})
        assert started.task is not None and "/Tasks/JID_" in started.task
        assert await _until(dell, started.task, {Phase.completed, Phase.failed}) == (
            Phase.completed
        )
    # Supermicro: only in a message's MessageArgs (the client finds it there too).
    async with open_session(pool, by_flavour["supermicro"].url) as smc:
        started = await smc.post(action, {"ImageURI": f"{image_url}/Supermicro.bin"})
        assert started.location is None
        assert started.task is not None and "/TaskService/Tasks/" in started.task
        assert await _until(smc, started.task, {Phase.completed}) == Phase.completed
    # iLO: no task; Oem.Hpe.State says how it goes.
    async with open_session(pool, by_flavour["hpe"].url) as ilo:
        started = await ilo.post(action, {"ImageURI": f"{image_url}/HPE.bin"})
        assert (started.status, started.task) == (200, None)
        assert await _until(ilo, SERVICE, {Phase.completed, Phase.failed}, hpe=True) == (
            Phase.completed
        )
    # OpenBMC: a multipart push, the 202 body is the task.
    entry = by_flavour["openbmc"]
    form = aiohttp.FormData()
    form.add_field("UpdateFile", build_image("", "BIOS", "1.0"), filename="bios.bin")
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=False),
            headers={
                "Authorization": aiohttp.encode_basic_auth(lab.config.username, lab.config.password)
            },
        ) as http,
        http.post(f"{entry.url}{SERVICE}/update", data=form) as resp,
    ):
        body = await resp.json()
        reference = task_reference(resp.status, resp.headers.get("Location"), body)
    assert reference == body["@odata.id"] and "/TaskService/Tasks/" in reference
