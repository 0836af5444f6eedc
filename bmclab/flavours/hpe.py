"""HPE iLO 5-like: numeric Ids, DE00A000-style storage Ids, Oem.Hpe blocks."""

from __future__ import annotations

from bmclab.flavours.base import Context, Flavour, Ids, alnum, dotted
from bmclab.rules import HPE
from bmclab.tree import JsonObject


def _oem(kind: str, ctx: Context) -> JsonObject | None:
    if kind == "system":
        return {
            "Hpe": {
                "@odata.type": "#HpeComputerSystemExt.v2_13_0.HpeComputerSystemExt",
                "PostState": "FinishedPost",
                "ServerFQDN": "",
            }
        }
    if kind == "update":
        # iLO reports an update's progress here, not in a task.
        return {"Hpe": {"State": "Idle", "FlashProgressPercent": 0}}
    if kind == "manager":
        return {
            "Hpe": {
                "@odata.type": "#HpeiLO.v2_8_0.HpeiLO",
                "License": {"LicenseString": "iLO Advanced", "LicenseType": "Perpetual"},
            }
        }
    return None


FLAVOUR = Flavour(
    name="hpe",
    manufacturer="HPE",
    models=(
        ("ProLiant DL360 Gen10 Plus", "intel"),
        ("ProLiant DL380 Gen10 Plus", "intel"),
        ("ProLiant DL325 Gen10 Plus", "amd"),
    ),
    system_id="1",
    manager_id="1",
    chassis_id="1",
    serial=lambda rng: "MXQ" + alnum(rng, 7),
    rules=HPE,
    sku=lambda rng, serial: rng.choice(("P39886-B21", "P28948-B21", "P18606-B21")),
    bios_version=lambda rng: (
        f"U46 v{rng.randrange(1, 3)}.{rng.randrange(10, 80)} "
        f"(0{rng.randrange(1, 10)}/1{rng.randrange(10)}/2025)"
    ),
    manager_model="iLO 5",
    manager_firmware=lambda rng: f"iLO 5 v3.{rng.randrange(0, 12):02d}",
    firmware_names=(
        "System ROM",
        "iLO 5",
        "Intelligent Platform Abstraction Data",
        "Power Management Controller Firmware",
        "Innovation Engine (IE) Firmware",
        "Server Platform Services (SPS) Firmware",
        "Redundant System ROM",
        "Intelligent Provisioning",
        "Power Supply Firmware",
        "System Programmable Logic Device",
        "HPE Smart Array P408i-a SR Gen10",
        "HPE Ethernet 10/25Gb 2-port 640SFP28 Adapter",
        "Embedded Video Controller",
        "Drive Backplane PIC Firmware",
        "TPM Firmware",
    ),
    firmware_id=lambda n, name, version: str(n),
    version=lambda rng: f"{dotted(rng, 6, 20, 30)} Feb 2{rng.randrange(10)} 2025",
    ids=Ids(storage="DE00A000", controller="0", drive="{i}", vm=("1", "2")),
    # iLO: slot 1 is the virtual USB key / floppy, slot 2 the virtual CD/DVD.
    vm_cd="2",
    storage_name="HPE MR416i-p Gen10+",
    mac_oui="94:40:c9",
    push_uri="/cgi-bin/uploadFile",
    redfish_version="1.20.0",
    oem=_oem,
    # iLO 5/6 expands subordinate resources only (`$expand=.`).
    expand={"ExpandAll": False, "Levels": True, "Links": False, "NoLinks": True, "MaxLevels": 1},
)
