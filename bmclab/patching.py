"""PATCH on a simulated BMC: the ETag precondition, property checks and the boot-override rules.

Vendors disagree on PATCH: some demand ``If-Match`` (428 without it), some need every boot
override property in one request, some quietly reset the override mode when it is left out.
`apply_patch` plays the BMC's `HostRules` plus its fault, then merges the change.
"""

from __future__ import annotations

from bmclab.bmc import Bmc
from bmclab.faults import FaultKind
from bmclab.outcome import Outcome
from bmclab.tree import JsonObject, Resource

BOOT_FIELDS = ("BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode")
# A target is usable only together with the property that says where to boot.
_TARGET_NEEDS = {
    "UefiTarget": "UefiTargetBootSourceOverride",
    "UefiHttp": "HttpBootUri",
    "UefiBootNext": "BootNext",
}
_UNSET = (None, "", "None")


def apply_patch(
    bmc: Bmc, resource: Resource, if_match: str | None, payload: JsonObject | None
) -> Outcome | None:
    """Refuse the PATCH with an Outcome, or apply it and return None."""
    if not if_match:
        if bmc.rules.if_match == "required":
            return Outcome(
                428,
                message="The request requires an If-Match header with the ETag of the resource.",
                message_id="PreconditionRequired",
                resolution="Read the resource, then resubmit with If-Match set to its ETag.",
            )
    elif not resource.etag_matches(if_match):
        return Outcome(
            412,
            message="The ETag supplied did not match the ETag required to change this resource.",
            message_id="PreconditionFailed",
            resolution="Read the resource again and resubmit with its current ETag.",
        )
    if payload is None:
        return Outcome(400, message="Body must be a JSON object", message_id="MalformedJSON")
    problem = _merge_check(resource.body, payload)
    if problem is not None:
        return problem
    boot = payload.get("Boot")
    current = resource.body.get("Boot")
    if isinstance(boot, dict) and isinstance(current, dict):
        problem = _boot_check(bmc, current, boot)
        if problem is not None:
            return problem
    _merge(resource.body, payload)
    if (
        isinstance(boot, dict)
        and isinstance(current, dict)
        and bmc.rules.mode_reverts
        and "BootSourceOverrideMode" not in boot
    ):
        current["BootSourceOverrideMode"] = bmc.rules.boot_mode
    resource.changed()
    return None


def _boot_check(bmc: Bmc, current: JsonObject, patch: JsonObject) -> Outcome | None:
    if bmc.has(FaultKind.BOOT_ALL_FIELDS):
        for name in BOOT_FIELDS:
            if name not in patch:
                return Outcome(
                    400,
                    message=f"The property {name} is a required property and must be included "
                    "in the request.",
                    message_id="PropertyMissing",
                    message_args=(name,),
                    resolution="Send BootSourceOverrideTarget, BootSourceOverrideEnabled and "
                    "BootSourceOverrideMode together.",
                )
    target = patch.get("BootSourceOverrideTarget", current.get("BootSourceOverrideTarget"))
    needed = _TARGET_NEEDS.get(str(target))
    if needed is not None and needed in current and patch.get(needed, current[needed]) in _UNSET:
        return Outcome(
            400,
            message=f"The property 'BootSourceOverrideTarget' could not be written because "
            f"its value would conflict with the value of the '{needed}' property.",
            message_id="PropertyValueConflict",
            message_args=("BootSourceOverrideTarget", needed),
            resolution=f"Set {needed} in the same request.",
        )
    return None


def _merge_check(current: JsonObject, patch: JsonObject) -> Outcome | None:
    for key, value in patch.items():
        if key.startswith("@") or key in ("Id", "Members") or key not in current:
            return Outcome(
                400,
                message=f"The property {key} is not in the list of valid properties for the "
                "resource or is read-only.",
                message_id="PropertyNotWritable",
                message_args=(key,),
            )
        if isinstance(value, dict) and isinstance(current[key], dict):
            problem = _merge_check(current[key], value)
            if problem is not None:
                return problem
            continue
        allowed = current.get(f"{key}@Redfish.AllowableValues")
        if isinstance(allowed, list) and value not in allowed:
            return Outcome(
                400,
                message=f"The value '{value}' for the property {key} is not in the list of "
                "acceptable values.",
                message_id="PropertyValueNotInList",
                message_args=(str(value), key),
                resolution=f"Choose one of: {', '.join(map(str, allowed))}.",
            )
    return None


def _merge(current: JsonObject, patch: JsonObject) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            _merge(current[key], value)
        else:
            current[key] = value
