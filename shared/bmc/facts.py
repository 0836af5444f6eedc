"""A server's own facts as its ComputerSystem states them: what registration records and every
inventory collection refreshes (power state changes most often). Operator-set fields — name,
description, location, pool — are not among them."""

from __future__ import annotations

from typing import Any

from shared.redfish import ComputerSystem

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
