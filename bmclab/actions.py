"""Redfish actions with side effects: power, firmware update tasks and virtual media."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from bmclab.bmc import Bmc
from bmclab.tree import ActionRef, JsonObject, links

TASKS = "/redfish/v1/TaskService/Tasks"
_OFF = {"ForceOff", "GracefulShutdown"}
_ON = {"On", "ForceOn", "ForceRestart", "GracefulRestart", "PowerCycle"}


@dataclass
class Outcome:
    status: int
    body: JsonObject | None = None
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""


def _allowed(bmc: Bmc, spec: JsonObject, parameter: str) -> list[str] | None:
    inline = spec.get(f"{parameter}@Redfish.AllowableValues")
    if isinstance(inline, list):
        return [str(v) for v in inline]
    info_path = spec.get("@Redfish.ActionInfo")
    info = bmc.store.get(info_path) if isinstance(info_path, str) else None
    for param in info.body.get("Parameters", []) if info else []:
        if isinstance(param, dict) and param.get("Name") == parameter:
            values = param.get("AllowableValues")
            return [str(v) for v in values] if isinstance(values, list) else None
    return None


def _action_spec(bmc: Bmc, ref: ActionRef) -> JsonObject:
    actions: Any = bmc.store.body(ref.resource).get("Actions", {})
    spec = actions.get(ref.name) or actions.get("Oem", {}).get(ref.name) or {}
    return spec if isinstance(spec, dict) else {}


def perform(bmc: Bmc, ref: ActionRef, payload: JsonObject) -> Outcome:
    verb = ref.name.rsplit(".", 1)[-1]
    if verb == "Reset" and "PowerState" in bmc.store.body(ref.resource):
        return _reset(bmc, ref, payload)
    if verb == "SimpleUpdate":
        image = payload.get("ImageURI")
        if not isinstance(image, str) or not image:
            return Outcome(400, message="ImageURI is required")
        targets = payload.get("Targets")
        return start_update(bmc, image, targets if isinstance(targets, list) else [])
    if verb in ("InsertMedia", "InsertVirtualMedia"):
        image = payload.get("Image")
        if not isinstance(image, str) or not image:
            return Outcome(400, message="Image is required")
        _set_media(bmc, ref.resource, image)
        return Outcome(204)
    if verb in ("EjectMedia", "EjectVirtualMedia"):
        _set_media(bmc, ref.resource, None)
        return Outcome(204)
    # Like Mockup-Server: any other advertised action is accepted and does nothing.
    return Outcome(204)


def _reset(bmc: Bmc, ref: ActionRef, payload: JsonObject) -> Outcome:
    reset_type = payload.get("ResetType")
    allowed = _allowed(bmc, _action_spec(bmc, ref), "ResetType")
    if not isinstance(reset_type, str) or (allowed is not None and reset_type not in allowed):
        return Outcome(400, message=f"ResetType must be one of {allowed}")
    current = bmc.store.body(ref.resource).get("PowerState")
    if reset_type == "PushPowerButton":
        target = "Off" if current == "On" else "On"
    elif reset_type in _OFF:
        target = "Off"
    elif reset_type in _ON:
        target = "On"
    else:
        return Outcome(204)  # Nmi and friends do not change the power state
    bmc.spawn(
        _power_later(
            bmc,
            ref.resource,
            target,
            restart=reset_type != "On" and target == "On" and current == "On",
        )
    )
    return Outcome(204)


async def _power_later(bmc: Bmc, path: str, state: str, *, restart: bool) -> None:
    resource = bmc.store.get(path)
    assert resource is not None
    if restart:
        # A restart passes through Off, as a client polling PowerState would see.
        await asyncio.sleep(bmc.behaviour.power_delay / 2)
        resource.body["PowerState"] = "Off"
        resource.changed()
        await asyncio.sleep(bmc.behaviour.power_delay / 2)
    else:
        await asyncio.sleep(bmc.behaviour.power_delay)
    resource.body["PowerState"] = state
    resource.changed()
    # Keep the chassis in step with the system it contains.
    for chassis in links(resource.body.get("Links", {}).get("Chassis", [])):
        target = bmc.store.get(chassis)
        if target is not None and "PowerState" in target.body:
            target.body["PowerState"] = state
            target.changed()


def _set_media(bmc: Bmc, path: str, image: str | None) -> None:
    resource = bmc.store.get(path)
    assert resource is not None
    resource.body["Image"] = image
    resource.body["Inserted"] = image is not None
    resource.body["ConnectedVia"] = "URI" if image else "NotConnected"
    if "ImageName" in resource.body or image:
        resource.body["ImageName"] = image.rsplit("/", 1)[-1] if image else None
    resource.changed()


def _inventory_members(bmc: Bmc) -> list[str]:
    for name in ("FirmwareInventory", "SoftwareInventory"):
        coll = bmc.store.get(f"/redfish/v1/UpdateService/{name}")
        if coll is not None:
            return [
                m["@odata.id"]
                for m in coll.body.get("Members", [])
                if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)
            ]
    return []


def _new_version(image: str, old: str) -> str:
    """Version taken from the image file name (e.g. bios-2.19.1.bin), else old + '.1'."""
    match = re.search(r"(\d+(?:\.\d+)+)", image.rsplit("/", 1)[-1])
    return match.group(1) if match else f"{old}.1"


def start_update(bmc: Bmc, image: str, targets: list[Any]) -> Outcome:
    members = _inventory_members(bmc)
    wanted = [t.get("@odata.id") if isinstance(t, dict) else t for t in targets]
    chosen = next((m for m in members if m in wanted), None)
    if chosen is None:
        chosen = next((m for m in members if bmc.store.get(m) is not None), None)
    task_id = bmc.next_task_id()
    path = f"{TASKS}/{task_id}"
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    body: JsonObject = {
        "@odata.id": path,
        "@odata.type": "#Task.v1_4_3.Task",
        "Id": task_id,
        "Name": "Firmware Update",
        "TaskState": "New",
        "TaskStatus": "OK",
        "PercentComplete": 0,
        "StartTime": now,
        "Messages": [],
        "Payload": {
            "TargetUri": "/redfish/v1/UpdateService",
            "HttpOperation": "POST",
            "JsonBody": f'{{"ImageURI": "{image}"}}',
        },
    }
    bmc.store.add_member(TASKS, path, body)
    bmc.spawn(_run_task(bmc, path, chosen, image))
    return Outcome(202, body, {"Location": path})


async def _run_task(bmc: Bmc, path: str, target: str | None, image: str) -> None:
    task = bmc.store.get(path)
    assert task is not None
    steps = 4
    for step in range(1, steps + 1):
        await asyncio.sleep(bmc.behaviour.task_duration / steps)
        task.body["TaskState"] = "Running"
        task.body["PercentComplete"] = step * 100 // steps if step < steps else 99
        task.changed()
    component = bmc.store.get(target) if target else None
    if component is not None:
        old = str(component.body.get("Version", "0"))
        component.body["Version"] = _new_version(image, old)
        component.changed()
    task.body.update(
        {
            "TaskState": "Completed",
            "PercentComplete": 100,
            "EndTime": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "Messages": [
                {
                    "MessageId": "Update.1.1.UpdateSuccessful",
                    "Message": f"Update of {target} succeeded.",
                }
            ],
        }
    )
    task.changed()
