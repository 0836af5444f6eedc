"""What a firmware inventory entry is: which slot it describes and which component it belongs to.

BMCs list more than the running firmware. HPE lists the "Redundant System ROM", Supermicro
"Backup BIOS"/"Backup BMC", OpenBMC every image it holds, Dell the `Previous-` version it can roll
back to and the `Available-` packages staged in its repository. Only ``active`` entries say what
runs; the others must never be taken for the running version (a baseline would count a server
compliant because its backup ROM has the new version). An entry is placed by, in order:

1. Dell's Id prefix (`Installed-`/`Current-` active, `Previous-` previous, `Available-` staging);
2. words in its Id, Name or Description ("Backup", "Golden", "Redundant", "Recovery", "Secondary"
   → backup; "Staging", "Staged", "Pending" → staging; "Previous", "Rollback" → previous);
3. a standby ``Status.State`` (`StandbySpare`, `StandbyOffline`) → backup;
4. otherwise active.

``SoftwareId`` is the vendor's component identity, except that Dell reports ``0`` for many NICs
(and some BMCs an empty string): those are no identity at all, and such entries are matched by
name instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from shared.redfish import normalise

JsonObject = Mapping[str, Any]


class Slot(StrEnum):
    active = "active"
    backup = "backup"
    staging = "staging"
    previous = "previous"


_DELL_PREFIXES = {
    "installed": Slot.active,
    "current": Slot.active,
    "previous": Slot.previous,
    "available": Slot.staging,
}
_DELL_ID = re.compile(r"^(installed|current|previous|available)-", re.IGNORECASE)
# Whole words (or camel-case parts: HPE's "SystemRomBackup"), so "Backplane" is not "backup".
_WORDS: tuple[tuple[re.Pattern[str], Slot], ...] = (
    (
        re.compile(r"(?:^|[^a-z])(backup|golden|redundant|recovery|secondary)(?:[^a-z]|$)"),
        Slot.backup,
    ),
    (re.compile(r"(?:^|[^a-z])(staging|staged|pending)(?:[^a-z]|$)"), Slot.staging),
    (re.compile(r"(?:^|[^a-z])(previous|rollback)(?:[^a-z]|$)"), Slot.previous),
)
_STANDBY_STATES = frozenset({"standbyspare", "standbyoffline"})
# Identities that name nothing (Dell NICs report 0).
_NO_SOFTWARE_ID = frozenset({"0", "0x0", "00000000-0000-0000-0000-000000000000"})

# HPE `Oem.Hpe.DeviceClass` of the iLO and of the System ROM.
HPE_ILO_CLASS = "2f317b9d-c9e3-4d76-bff6-b9d0d085a952"
HPE_SYSTEM_ROM_CLASS = "aa148d2e-6e09-453e-bc6f-63baa5f5ccc4"
_BMC_NAME = re.compile(
    r"^(bmc|bmc[ _]active|ilo \d+|integrated dell remote access controller|idrac.*|"
    r"xclarity controller|bmc firmware)$",
    re.IGNORECASE,
)
_BIOS_NAME = re.compile(r"^(bios|host[ _]bios|system rom|uefi|bios firmware)$", re.IGNORECASE)


def _split_camel(text: str) -> str:
    """``SystemRomBackup`` → ``system rom backup`` (lower case, words apart)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text).lower()


def slot_of(body: JsonObject) -> Slot:
    entry_id = normalise.clean_text(body.get("Id")) or ""
    dell = _DELL_ID.match(entry_id)
    if dell is not None:
        return _DELL_PREFIXES[dell.group(1).lower()]
    for key in ("Id", "Name", "Description"):
        words = _split_camel(normalise.clean_text(body.get(key)) or "")
        for pattern, slot in _WORDS:
            if pattern.search(words):
                return slot
    status = body.get("Status")
    state = status.get("State") if isinstance(status, Mapping) else None
    if isinstance(state, str) and state.strip().lower() in _STANDBY_STATES:
        return Slot.backup
    return Slot.active


def software_id_of(body: JsonObject) -> str | None:
    software_id = normalise.clean_text(body.get("SoftwareId"))
    if software_id is None or software_id.lower() in _NO_SOFTWARE_ID:
        return None
    return software_id


def hpe_oem(body: JsonObject) -> JsonObject:
    oem = body.get("Oem")
    hpe = oem.get("Hpe") if isinstance(oem, Mapping) else None
    return hpe if isinstance(hpe, Mapping) else {}


def device_class_of(body: JsonObject) -> str | None:
    return normalise.clean_text(hpe_oem(body).get("DeviceClass"))


def targets_of(body: JsonObject) -> tuple[str, ...]:
    targets = hpe_oem(body).get("Targets")
    if not isinstance(targets, list):
        return ()
    cleaned = (normalise.clean_text(t) for t in targets)
    return tuple(dict.fromkeys(t.lower() for t in cleaned if t is not None))


def is_bmc(
    entry_id: str | None, name: str | None, device_class: str | None, related: Iterable[str]
) -> bool:
    """Whether an entry is the BMC's own firmware (its version is the server's ``bmc_version``)."""
    if device_class is not None and device_class.lower() == HPE_ILO_CLASS:
        return True
    if any("/managers/" in path.lower() for path in related):
        return True
    return any(_BMC_NAME.match(text) for text in (entry_id or "", name or "") if text)


def is_bios(
    entry_id: str | None, name: str | None, device_class: str | None, related: Iterable[str]
) -> bool:
    """Whether an entry is the host's BIOS / system ROM."""
    if device_class is not None and device_class.lower() == HPE_SYSTEM_ROM_CLASS:
        return True
    if any(re.search(r"/systems/[^/]+$", path.lower()) for path in related):
        return True
    return any(_BIOS_NAME.match(text) for text in (entry_id or "", name or "") if text)
