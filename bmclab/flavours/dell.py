"""Dell iDRAC 9-like: dotted FQDD Ids, JID_ task Ids, Oem.Dell blocks, VirtualMedia under the
System (as iDRAC 6.x firmware has it; older firmware had it under the Manager)."""

from __future__ import annotations

from bmclab.flavours.base import Context, Flavour, Ids, alnum, dotted
from bmclab.rules import DELL
from bmclab.tree import JsonObject


def _oem(kind: str, ctx: Context) -> JsonObject | None:
    if kind == "system":
        return {
            "Dell": {
                "DellSystem": {
                    "@odata.type": "#DellSystem.v1_3_0.DellSystem",
                    "ChassisServiceTag": ctx.serial,
                    "NodeID": ctx.serial,
                    "SystemGeneration": "15G Monolithic",
                    "CPURollupStatus": "OK",
                }
            }
        }
    if kind == "manager":
        return {
            "Dell": {
                "DelliDRACCard": {
                    "@odata.type": "#DelliDRACCard.v1_1_0.DelliDRACCard",
                    "IPMIVersion": "2.0",
                    "URLString": f"https://{ctx.address}:443",
                }
            }
        }
    return None


FLAVOUR = Flavour(
    name="dell",
    manufacturer="Dell Inc.",
    models=(("PowerEdge R650", "intel"), ("PowerEdge R750", "intel"), ("PowerEdge R6525", "amd")),
    system_id="System.Embedded.1",
    manager_id="iDRAC.Embedded.1",
    chassis_id="System.Embedded.1",
    # Dell service tags: 7 characters, no vowels that look like digits.
    serial=lambda rng: alnum(rng, 7, "0123456789BCDFGHJKLMNPQRSTVWXYZ"),
    rules=DELL,
    sku=lambda rng, serial: serial,
    bios_version=lambda rng: f"1.{rng.randrange(3, 12)}.{rng.randrange(6)}",
    manager_model="15G Monolithic",
    manager_firmware=lambda rng: f"6.10.{rng.randrange(10, 90)}.00",
    firmware_names=(
        "BIOS",
        "Integrated Dell Remote Access Controller",
        "PERC H755 Front",
        "Broadcom Gigabit Ethernet BCM5720",
        "Intel(R) Ethernet 25G 2P E810-XXV Adapter",
        "Backplane 1",
        "System CPLD",
        "Lifecycle Controller",
        "OS Collector",
        "Power Supply.Slot.1",
        "Power Supply.Slot.2",
        "TPM",
        "Dell 64 Bit uEFI Diagnostics",
        "iDRAC Service Module Installer",
        "Dell OS Driver Pack",
    ),
    # Dell encodes component id and version in the member Id, and reports SoftwareId 0 for
    # many NICs.
    firmware_id=lambda n, name, version: f"Installed-{100 + n * 7}-{version}",
    software_id=lambda n, name: "0" if "Ethernet" in name else str(100 + n * 7),
    previous_id=lambda n, name, version: f"Previous-{100 + n * 7}-{version}",
    version=lambda rng: dotted(rng, 30, 20, 10),
    ids=Ids(
        cpu="CPU.Socket.{n}",
        dimm="DIMM.Socket.A{n}",
        nic="NIC.Integrated.1-{n}-1",
        storage="RAID.Integrated.1-1",
        controller="RAID.Integrated.1-1",
        drive="Disk.Bay.{i}:Enclosure.Internal.0-1:RAID.Integrated.1-1",
        volume="Disk.Virtual.{i}:RAID.Integrated.1-1",
        task="JID_{n:012d}",
        vm=("CD", "RemovableDisk"),
    ),
    vm_under="Systems",
    storage_name="PERC H755 Front",
    mac_oui="b0:7b:25",
    push_uri="/redfish/v1/UpdateService/MultipartUpload",
    oem=_oem,
    # iDRAC 9 expands every form, one level deep.
    expand={"ExpandAll": True, "Levels": True, "Links": True, "NoLinks": True, "MaxLevels": 1},
)
