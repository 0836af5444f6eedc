"""A server's own facts as its ComputerSystem states them: what registration records and every
inventory collection refreshes (power state changes most often). Operator-set fields — name,
description, location, pool — are not among them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.redfish import ComputerSystem, FirmwareComponent
from shared.redfish.firmware_identity import Slot

# server column → ComputerSystem attribute
SYSTEM_FIELDS = {
    "uuid": "uuid",
    "hostname": "host_name",
    "model": "model",
    "manufacturer": "manufacturer",
    "serial_number": "serial_number",
    "sku": "sku",
    "bios_version": "bios_version",
    "power_state": "power_state",
    "health": "health",
}


def system_facts(system: ComputerSystem) -> dict[str, Any]:
    return {column: getattr(system, attribute) for column, attribute in SYSTEM_FIELDS.items()}


def firmware_facts(
    system: ComputerSystem, firmware: Sequence[FirmwareComponent]
) -> dict[str, str | None]:
    """``bmc_version`` from the active BMC entry of the firmware inventory, and ``bios_version``
    from the active BIOS entry when the system states none. Backup, staged and previous entries
    never count: a redundant ROM holding the new image does not make it the running one."""
    active = [f for f in firmware if f.slot == Slot.active and f.version]
    facts: dict[str, str | None] = {
        "bmc_version": next((f.version for f in active if f.is_bmc), None)
    }
    if system.bios_version is None:
        facts["bios_version"] = next((f.version for f in active if f.is_bios), None)
    return facts
