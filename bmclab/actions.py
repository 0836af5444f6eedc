"""Redfish actions with side effects: power, firmware update tasks and virtual media."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

from bmclab import media
from bmclab.bmc import Bmc
from bmclab.outcome import Outcome
from bmclab.tree import ActionRef, JsonObject

TASKS = "/redfish/v1/TaskService/Tasks"


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


async def perform(bmc: Bmc, ref: ActionRef, payload: JsonObject) -> Outcome:
    verb = ref.name.rsplit(".", 1)[-1]
    if ref.name == "#ComputerSystem.Reset" and "PowerState" in bmc.store.body(ref.resource):
        return _reset(bmc, ref, payload)
    if verb == "SimpleUpdate":
        image = payload.get("ImageURI")
        if not isinstance(image, str) or not image:
            return Outcome(400, message="ImageURI is required")
        targets = payload.get("Targets")
        return start_update(bmc, image, targets if isinstance(targets, list) else [])
    if verb in ("InsertMedia", "InsertVirtualMedia"):
        return await media.insert(bmc, ref.resource, payload)
    if verb in ("EjectMedia", "EjectVirtualMedia"):
        return media.eject(bmc, ref.resource)
    # Like Mockup-Server: any other advertised action is accepted and does nothing.
    return Outcome(204)


def _reset(bmc: Bmc, ref: ActionRef, payload: JsonObject) -> Outcome:
    reset_type = payload.get("ResetType")
    action = ref.name.lstrip("#")
    if not isinstance(reset_type, str):
        return Outcome(
            400,
            message=f"The action {action} requires the parameter ResetType to be present in "
            "the request body.",
            message_id="ActionParameterMissing",
            message_args=(action, "ResetType"),
            resolution="Supply the action with the required parameter in the request body "
            "when the request is resubmitted.",
        )
    allowed = _allowed(bmc, _action_spec(bmc, ref), "ResetType")
    if allowed is not None and reset_type not in allowed:
        return Outcome(
            400,
            message=f"The value '{reset_type}' for the parameter ResetType in the action "
            f"{action} is not in the list of acceptable values.",
            message_id="Base.1.12.ActionParameterValueNotInList",
            message_args=(reset_type, "ResetType", action),
            resolution="Choose a value from the enumeration list that the implementation can "
            f"support and resubmit the request: {', '.join(allowed)}.",
        )
    outcome = bmc.host(ref.resource).reset(reset_type)
    if outcome.status < 300:
        bmc.counters.resets_applied[reset_type] += 1
    return outcome


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
