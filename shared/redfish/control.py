"""What a resource lets a client change, as the BMC advertises it: its actions with the values
their parameters allow, and a ComputerSystem's boot override.

Vendors advertise allowed values in two ways: inline (``ResetType@Redfish.AllowableValues``,
iDRAC and iLO) or in an ``ActionInfo`` resource the action links to (``@Redfish.ActionInfo``,
AMI MegaRAC and OpenBMC). `allowable_values` reads either; when a BMC says nothing, every value
of the schema is allowed (``None``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.redfish.client import RedfishSession
from shared.redfish.resources import JsonObject, value

BOOT_FIELDS = ("BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode")


@dataclass(frozen=True)
class Action:
    name: str  # "#ComputerSystem.Reset"
    target: str  # the path to POST to
    spec: Mapping[str, Any]  # the action's object in "Actions"


def find_action(body: JsonObject, name: str) -> Action | None:
    spec = value(body, "Actions", name)
    if not isinstance(spec, Mapping):
        return None
    target = spec.get("target")
    if not isinstance(target, str) or not target.strip():
        return None
    return Action(name, target.strip(), spec)


def _strings(values: Any) -> tuple[str, ...] | None:
    if not isinstance(values, list):
        return None
    return tuple(v for v in values if isinstance(v, str))


async def allowable_values(
    bmc: RedfishSession, action: Action, parameter: str
) -> tuple[str, ...] | None:
    """The values ``parameter`` of ``action`` may take, or None when the BMC does not say."""
    inline = _strings(action.spec.get(f"{parameter}@Redfish.AllowableValues"))
    if inline is not None:
        return inline
    info_path = action.spec.get("@Redfish.ActionInfo")
    if not isinstance(info_path, str) or not info_path.strip():
        return None
    info = await bmc.get(info_path)
    for item in info.get("Parameters") or []:
        if isinstance(item, Mapping) and item.get("Name") == parameter:
            return _strings(item.get("AllowableValues"))
    return None


@dataclass(frozen=True)
class BootOverride:
    """A system's ``Boot`` object: the override as set now and what may be set."""

    target: str | None
    enabled: str | None
    mode: str | None
    http_boot_uri: str | None
    has_mode: bool
    has_http_boot_uri: bool
    allowed_targets: tuple[str, ...] | None
    allowed_enabled: tuple[str, ...] | None
    allowed_modes: tuple[str, ...] | None

    @classmethod
    def parse(cls, system: JsonObject) -> BootOverride | None:
        boot = value(system, "Boot")
        if not isinstance(boot, Mapping) or "BootSourceOverrideTarget" not in boot:
            return None

        def text(key: str) -> str | None:
            item = boot.get(key)
            return item if isinstance(item, str) else None

        return cls(
            target=text("BootSourceOverrideTarget"),
            enabled=text("BootSourceOverrideEnabled"),
            mode=text("BootSourceOverrideMode"),
            http_boot_uri=text("HttpBootUri"),
            has_mode="BootSourceOverrideMode" in boot,
            has_http_boot_uri="HttpBootUri" in boot,
            allowed_targets=_strings(boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")),
            allowed_enabled=_strings(boot.get("BootSourceOverrideEnabled@Redfish.AllowableValues")),
            allowed_modes=_strings(boot.get("BootSourceOverrideMode@Redfish.AllowableValues")),
        )

    def differs(self, wanted: Mapping[str, str]) -> list[str]:
        """The fields of ``wanted`` (Boot property → value) that read differently now."""
        now = {
            "BootSourceOverrideTarget": self.target,
            "BootSourceOverrideEnabled": self.enabled,
            "BootSourceOverrideMode": self.mode,
            "HttpBootUri": self.http_boot_uri,
        }
        return [name for name, wanted_value in wanted.items() if now.get(name) != wanted_value]
