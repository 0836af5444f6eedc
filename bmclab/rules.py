"""Power, boot-override and virtual-media rules that differ between BMC vendors.

A synthetic flavour carries one `HostRules`; a recorded mockup gets `MOCKUP_RULES`, where the
reset types and boot targets are whatever the recording advertises. The values below follow
what the real firmware advertises: iDRAC 9 (inline, all eight reset types), iLO 5 3.x as
recorded (inline, no PowerCycle), AMI MegaRAC as recorded (ActionInfo, four types) and bmcweb
(ActionInfo, no PushPowerButton). Virtual media: iDRAC refuses ``Inserted`` and
``WriteProtected`` in ``InsertMedia``; AMI MegaRAC mounts one image at a time and refuses image
URLs with a query string; iLO mounts CDs only in its second slot (the first is for USB sticks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IfMatch = Literal["required", "optional"]


@dataclass(frozen=True)
class HostRules:
    reset_types: tuple[str, ...]
    # Reset values inline (ResetType@Redfish.AllowableValues) or only in an ActionInfo.
    reset_inline: bool = True
    boot_targets: tuple[str, ...] = ("None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup")
    # BootSourceOverrideEnabled values; advertised only when `advertise_enabled`.
    boot_enabled: tuple[str, ...] = ("Disabled", "Once", "Continuous")
    advertise_enabled: bool = True
    boot_mode: str = "UEFI"
    boot_modes: tuple[str, ...] | None = None  # advertised BootSourceOverrideMode values
    # PATCH without If-Match: 428 when required; a stale If-Match is 412 either way.
    if_match: IfMatch = "optional"
    # A boot PATCH without BootSourceOverrideMode puts the mode back to `boot_mode`
    # (Supermicro does this; clients that care send all three fields).
    mode_reverts: bool = False
    # iDRAC refuses to power on while powering off and for a moment after reaching Off.
    on_after_off_conflict: bool = False
    # InsertMedia parameters the BMC refuses with 400 (ActionParameterNotSupported).
    media_refused_parameters: tuple[str, ...] = ()
    # An image URL with a "?" is refused (the firmware cannot parse a query).
    media_refuses_query: bool = False
    # Only one VirtualMedia slot may hold an image at a time (409 on a second insert).
    media_one_slot: bool = False


_TYPES_IDRAC9 = (
    "On",
    "ForceOff",
    "ForceRestart",
    "GracefulRestart",
    "GracefulShutdown",
    "PushPowerButton",
    "Nmi",
    "PowerCycle",
)
_TYPES_ILO5 = (
    "On",
    "ForceOff",
    "GracefulShutdown",
    "ForceRestart",
    "Nmi",
    "PushPowerButton",
    "GracefulRestart",
)
_TYPES_AMI = ("GracefulShutdown", "ForceRestart", "ForceOff", "On")
_TYPES_BMCWEB = (
    "On",
    "ForceOff",
    "ForceOn",
    "ForceRestart",
    "GracefulRestart",
    "GracefulShutdown",
    "PowerCycle",
    "Nmi",
)

DELL = HostRules(
    reset_types=_TYPES_IDRAC9,
    boot_targets=(
        "None",
        "Pxe",
        "Floppy",
        "Cd",
        "Hdd",
        "BiosSetup",
        "Utilities",
        "UefiTarget",
        "SDCard",
        "UefiHttp",
    ),
    boot_enabled=("Once", "Continuous", "Disabled"),
    on_after_off_conflict=True,
    media_refused_parameters=("Inserted", "WriteProtected"),
)
HPE = HostRules(
    reset_types=_TYPES_ILO5,
    boot_targets=(
        "None",
        "Cd",
        "Hdd",
        "Usb",
        "SDCard",
        "Utilities",
        "Diags",
        "BiosSetup",
        "Pxe",
        "UefiShell",
        "UefiHttp",
        "UefiTarget",
    ),
    # iLO does not advertise the Enabled values.
    advertise_enabled=False,
)
SUPERMICRO = HostRules(
    reset_types=_TYPES_AMI,
    reset_inline=False,
    boot_targets=("None", "Pxe", "Floppy", "Cd", "Usb", "Hdd", "BiosSetup", "UefiShell"),
    boot_mode="Legacy",
    boot_modes=("Legacy", "UEFI"),
    if_match="required",
    mode_reverts=True,
    media_refuses_query=True,
    media_one_slot=True,
)
OPENBMC = HostRules(
    reset_types=_TYPES_BMCWEB,
    reset_inline=False,
    boot_targets=("None", "Pxe", "Hdd", "Cd", "Diags", "BiosSetup", "Usb"),
    # This flavour has no persistent override: clients must fall back to Once.
    boot_enabled=("Disabled", "Once"),
    boot_modes=("Legacy", "UEFI"),
)
# Recorded trees keep their own advertised values; only the PATCH policy is chosen here.
MOCKUP_RULES = HostRules(reset_types=())
