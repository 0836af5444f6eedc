"""Firmware inventory identity: slots, SoftwareId, RelatedItem, HPE DeviceClass/Targets, and the
server's running BIOS and BMC versions, over every recorded mockup and every lab flavour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from inventory_helpers import mockup_dirs

from bmclab.flavours import FLAVOURS, build_tree
from shared.bmc.facts import firmware_facts
from shared.redfish import ComputerSystem, FirmwareComponent
from shared.redfish.firmware_identity import HPE_ILO_CLASS, HPE_SYSTEM_ROM_CLASS, Slot, slot_of

MOCKUPS = {path.name: path for path in mockup_dirs()}

# Per recorded mockup: the running BMC and BIOS versions, and the entries that are not running.
RECORDED: dict[str, tuple[str | None, str | None, set[tuple[str, str]]]] = {
    "dmtf-public-rackmount1": ("1.45.455b66-rev4", "P79 v1.45", set()),
    "dmtf-public-tower": ("1.45.455b66-rev4", "P79 v1.45", set()),
    "gigabyte-h262-z63-ami": ("12.84.13", "C27", set()),
    "hpe-ilo5-apollo-xl675d-gen10plus": (
        "2.55 Oct 01 2021",
        "A47 v2.52 (10/29/2021)",
        {("Redundant System ROM", "A47 v2.40 (02/23/2021)")},
    ),
    "hpe-ilo5-proliant-dl360-gen10plus": (
        "3.11 Feb 25 2025",
        "U46 v2.34 (03/11/2025)",
        {("Redundant System ROM", "U46 v1.80 (07/05/2023)")},
    ),
    "hpe-ilo6-proliant-dl380a-gen11": (
        "1.66 Dec 13 2024",
        "U58 v2.44 (01/17/2025)",
        {("Redundant System ROM", "U58 v2.44 (01/17/2025)")},
    ),
    "hpe-ilo7-proliant-dl360-gen12": ("1.14.00 May 28 2025", "U68 v1.40 (05/22/2025)", set()),
    "intel-s2600bpb": ("1.93.870cf4f0", "SE5C620.86B.02.01.0008.C0001.031920191559", set()),
    "openbmc-bmcweb-stock": ("2.15.0-dev-686-g100c36de90", None, set()),
}


def _read(root: Path, odata_id: str) -> dict[str, Any]:
    path = root / odata_id.strip("/") / "index.json"
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def recorded_firmware(root: Path) -> tuple[ComputerSystem, list[FirmwareComponent]]:
    """The system and the firmware inventory the reader would take (FirmwareInventory, else
    SoftwareInventory), read from the files."""
    systems = _read(root, "/redfish/v1/Systems")
    system = ComputerSystem.parse(_read(root, systems["Members"][0]["@odata.id"]))
    service = _read(root, "/redfish/v1/UpdateService")
    for key in ("FirmwareInventory", "SoftwareInventory"):
        if key in service:
            members = _read(root, service[key]["@odata.id"])["Members"]
            return system, [FirmwareComponent.parse(_read(root, m["@odata.id"])) for m in members]
    return system, []


def _bare(system: ComputerSystem) -> ComputerSystem:
    """The system without a BiosVersion (as some BMCs serve it)."""
    return ComputerSystem.parse({k: v for k, v in system.raw.items() if k != "BiosVersion"})


@pytest.mark.skipif(not MOCKUPS, reason="the recorded mockups are not available")
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_mockups(name: str) -> None:
    system, firmware = recorded_firmware(MOCKUPS[name])
    bmc, bios, not_running = RECORDED[name]
    assert firmware
    assert {(f.name, f.version) for f in firmware if f.slot != Slot.active} == not_running
    facts = firmware_facts(_bare(system), firmware)
    assert facts == {"bmc_version": bmc, "bios_version": bios}
    if system.bios_version is not None:
        # The system's own BiosVersion stays the server's bios_version (its spelling may differ
        # from the inventory entry's: DMTF adds the date).
        assert firmware_facts(system, firmware) == {"bmc_version": bmc}


@pytest.mark.skipif(not MOCKUPS, reason="the recorded mockups are not available")
def test_recorded_identities() -> None:
    _, dmtf = recorded_firmware(MOCKUPS["dmtf-public-rackmount1"])
    by_id = {f.id: f for f in dmtf}
    assert by_id["BMC"].software_id == "1624A9DF-5E13-47FC-874A-DF3AFF143089"
    assert by_id["BMC"].related_items == ("/redfish/v1/Managers/BMC",)
    assert by_id["BIOS"].related_items == ("/redfish/v1/Systems/437XR1138R2",)
    # Related to the system's storage, not the system: not the BIOS.
    assert not by_id["SS"].is_bios

    _, hpe = recorded_firmware(MOCKUPS["hpe-ilo6-proliant-dl380a-gen11"])
    rom = next(f for f in hpe if f.name == "System ROM")
    assert rom.device_class == HPE_SYSTEM_ROM_CLASS
    assert rom.targets == (
        "00000000-0000-0000-0000-00000000024a",
        "00000000-0000-0000-0000-000001553538",
        "00000000-0000-0000-0001-00000001024a",
    )
    assert next(f for f in hpe if f.name == "iLO 6").device_class == HPE_ILO_CLASS
    # HPE drives name their SoftwareId after the device class and the model, and link the drive.
    drive = next(f for f in hpe if f.software_id and ":" in f.software_id)
    assert drive.related_items and "/Drives/" in drive.related_items[0]
    # "Universal Backplane Manager" entries are active: "Backplane" is not "backup".
    assert all(f.slot == Slot.active for f in hpe if "BP" in (f.name or ""))


@pytest.mark.parametrize(
    ("body", "slot"),
    [
        ({"Id": "Installed-159-2.19.1"}, Slot.active),
        ({"Id": "Current-101548-25.5.6.0009__RAID.Integrated.1-1"}, Slot.active),
        ({"Id": "Previous-159-2.18.1"}, Slot.previous),
        ({"Id": "Available-159-2.20.0"}, Slot.staging),
        ({"Id": "Backup_BMC", "Name": "BMC"}, Slot.backup),
        ({"Id": "bmc_backup"}, Slot.backup),
        ({"Id": "10", "Name": "Redundant System ROM"}, Slot.backup),
        ({"Id": "10", "Description": "SystemRomBackup"}, Slot.backup),
        ({"Id": "2", "Description": "SystemRomActive"}, Slot.active),
        ({"Id": "BMC-Golden", "Name": "Golden image"}, Slot.backup),
        ({"Id": "BIOS-Pending"}, Slot.staging),
        ({"Id": "BIOS", "Name": "Staged BIOS"}, Slot.staging),
        ({"Id": "a1b2", "Status": {"State": "StandbySpare"}}, Slot.backup),
        ({"Id": "a1b2", "Status": {"State": "Enabled"}}, Slot.active),
        ({"Id": "BP1", "Name": "Backplane 1"}, Slot.active),
        ({}, Slot.active),
    ],
)
def test_slot_rules(body: dict[str, Any], slot: Slot) -> None:
    assert slot_of(body) == slot


@pytest.mark.parametrize("software_id", ["0", " 0 ", "", "0x0"])
def test_dell_zero_software_id_is_no_identity(software_id: str) -> None:
    body = {"Id": "Installed-0-22.31.6", "Name": "Intel(R) Ethernet 25G", "SoftwareId": software_id}
    assert FirmwareComponent.parse(body).software_id is None


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_lab_flavours(flavour: str) -> None:
    """Each lab flavour lists its running BIOS as the system states it, and its backup or
    rollback entries (Dell Previous-, HPE Redundant ROM, Supermicro and OpenBMC backups) are
    never the running version."""
    for index in range(6):
        tree = build_tree(
            FLAVOURS[flavour],
            seed=7,
            index=index,
            address="127.0.0.1",
            serial="S1",
            session_timeout=60,
        )
        resources = tree.resources
        system = ComputerSystem.parse(resources[f"/redfish/v1/Systems/{tree.system_ids[0]}"])
        firmware = [
            FirmwareComponent.parse(body)
            for path, body in resources.items()
            if "Inventory/" in path
        ]
        facts = firmware_facts(_bare(system), firmware)
        assert system.bios_version is not None
        assert facts["bios_version"] == system.bios_version
        assert facts["bmc_version"] is not None
        bios = [f for f in firmware if f.is_bios]
        assert [f.slot for f in bios].count(Slot.active) == 1
        for entry in firmware:
            if entry.slot != Slot.active:
                assert any(
                    w in (entry.id or "") + (entry.name or "") for w in _NOT_RUNNING[flavour]
                )
        if flavour == "dell":
            previous = [f for f in firmware if f.slot == Slot.previous]
            assert {f.name for f in previous} == {
                "BIOS",
                "Integrated Dell Remote Access Controller",
            }
            for entry in firmware:
                nic = "Ethernet" in (entry.name or "")
                assert (entry.software_id is None) == nic, entry


_NOT_RUNNING = {
    "dell": ("Previous-",),
    "hpe": ("Redundant",),
    "supermicro": ("Backup",),
    "openbmc": ("backup",),
}
