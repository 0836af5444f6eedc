"""Redfish actions with side effects: power, firmware updates (`bmclab.updates`), BMC resets and
virtual media."""

from __future__ import annotations

from typing import Any

from bmclab import media, updates
from bmclab.bmc import Bmc
from bmclab.outcome import Outcome
from bmclab.tree import ActionRef, JsonObject


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
        return updates.simple_update(bmc, image)
    if verb == "StartUpdate":
        return updates.start_update(bmc)
    if ref.name == "#Manager.Reset":
        bmc.spawn(updates.reset_bmc(bmc))
        return Outcome(204)
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
