"""`read_systems` against every synthetic flavour and every recorded mockup.

Expected values come from the tree the lab serves (synthetic) or the mockup's own index.json
files (recorded), never from constants, so a new mockup is covered without editing this file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redfish_helpers import lab_config, open_session

from bmclab import Lab
from shared.redfish import ComputerSystem, RedfishPool, ServiceRoot, read_systems
from tests.bmclab.bmclab_helpers import mockup_dirs
from tests.lab_net import LAB_NET

MOCKUPS = mockup_dirs()
FLAVOURS = ("dell", "hpe", "supermicro", "openbmc")
# Firmware filler values present in the lab's flavours and the mockups; the client must turn
# them into None. Kept explicit here so the test does not reuse the code under test.
KNOWN_PLACEHOLDERS = {
    "Default string",
    "To Be Filled By O.E.M.",
    "....................",
    "01234567890123456789AB",
}


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = lab_config(
        f"{LAB_NET}.170.0/24", count=len(FLAVOURS), flavours=FLAVOURS, mockups=tuple(MOCKUPS)
    )
    async with Lab(config) as running:
        yield running


def source_body(lab: Lab, index: int, odata_id: str) -> dict[str, Any]:
    """The JSON the BMC serves at ``odata_id``: the mockup file, or the synthetic tree."""
    if index >= lab.config.count:
        mockup = Path(lab.config.mockups[index - lab.config.count])
        document: dict[str, Any] = json.loads(
            (mockup / odata_id.strip("/") / "index.json").read_text()
        )
        return document
    return lab.bmc(index).store.snapshot(odata_id)


def _text(body: dict[str, Any], *keys: str) -> str | None:
    value: Any = body
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value.strip() or None if isinstance(value, str) else None


def _identifier(body: dict[str, Any], key: str) -> str | None:
    value = _text(body, key)
    return None if value in KNOWN_PLACEHOLDERS else value


def _link(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value.get("@odata.id") if isinstance(value, dict) else None


def expected_system(body: dict[str, Any]) -> dict[str, Any]:
    uuid = _text(body, "UUID")
    return {
        "odata_id": body["@odata.id"],
        "id": _text(body, "Id"),
        "name": _text(body, "Name"),
        "uuid": uuid.lower() if uuid else None,
        "manufacturer": _text(body, "Manufacturer"),
        "model": _text(body, "Model"),
        "serial_number": _identifier(body, "SerialNumber"),
        "sku": _identifier(body, "SKU"),
        "bios_version": _text(body, "BiosVersion"),
        "power_state": _text(body, "PowerState"),
        "health": _text(body, "Status", "Health"),
        "state": _text(body, "Status", "State"),
        "host_name": _text(body, "HostName"),
        "processors": _link(body, "Processors"),
        "memory": _link(body, "Memory"),
        "ethernet_interfaces": _link(body, "EthernetInterfaces"),
        "storage": _link(body, "Storage"),
        "simple_storage": _link(body, "SimpleStorage"),
    }


def actual_system(system: ComputerSystem) -> dict[str, Any]:
    return {key: getattr(system, key) for key in expected_system({"@odata.id": ""})}


async def test_every_flavour_and_mockup(lab: Lab) -> None:
    pool = RedfishPool()
    placeholders_seen = 0
    for entry in lab.manifest:
        bmc = lab.bmc(entry.index)
        async with open_session(pool, entry.url) as session:
            systems = await read_systems(session)
            assert session.auth_mode == "session"
            root = ServiceRoot.parse(session.root)
        label = entry.flavour
        assert [s.id for s in systems] == list(entry.system_ids), label
        for system in systems:
            body = source_body(lab, entry.index, system.odata_id)
            assert actual_system(system) == expected_system(body), label
            assert system.raw == body, label
            placeholders_seen += _text(body, "SKU") in KNOWN_PLACEHOLDERS
        # The manifest carries the clean identity (no AMI padding).
        first = systems[0]
        assert (first.manufacturer, first.model, first.serial_number) == (
            entry.manufacturer,
            entry.model,
            entry.serial,
        ), label
        source_root = source_body(lab, entry.index, "/redfish/v1")
        assert root.redfish_version == source_root["RedfishVersion"], label
        assert root.uuid == source_root["UUID"].lower(), label
        assert root.systems == source_root["Systems"]["@odata.id"], label
        # Logged in once, never more than one session at a time, logged out.
        assert (bmc.total_logins, bmc.max_sessions, bmc.open_sessions) == (1, 1, 0), label
    assert placeholders_seen >= 1  # the placeholder rule was exercised
