"""Supermicro / AMI MegaRAC-like: placeholder SKUs, padded strings, upper-case MACs,
SimpleStorage or inline StorageControllers, VirtualMedia under the System."""

from __future__ import annotations

from bmclab.flavours.base import Flavour, Ids, dotted
from bmclab.rules import SUPERMICRO

FLAVOUR = Flavour(
    name="supermicro",
    manufacturer="Supermicro",
    models=(("SYS-1029U-TRT", "intel"), ("SYS-2029U-TR4", "intel"), ("AS -1114S-WN10RT", "amd")),
    system_id="1",
    manager_id="1",
    chassis_id="1",
    serial=lambda rng: f"S{rng.randrange(10**8, 10**9)}",
    rules=SUPERMICRO,
    sku=lambda rng, serial: rng.choice(("Default string", "To Be Filled By O.E.M.")),
    bios_version=lambda rng: f"3.{rng.randrange(1, 9)}",
    manager_model="ASPEED",
    manager_firmware=lambda rng: f"1.{rng.randrange(60, 80)}.{rng.randrange(20):02d}",
    firmware_names=(
        "BIOS",
        "BMC",
        "CPLD",
        "Backup BIOS",
        "Backup BMC",
        "Broadcom 3908 SAS",
        "PSU1",
        "PSU2",
        "Intel X710 NIC",
        "Mellanox ConnectX-5",
    ),
    # AMI uses mnemonic firmware Ids.
    firmware_id=lambda n, name, version: name.upper().replace(" ", "_"),
    version=lambda rng: dotted(rng, 5, 40, 100),
    ids=Ids(storage="1", drive="{i}", vm=("CD1", "USBStick1")),
    storage=("simple", "inline"),
    storage_name="Broadcom 3908 SAS",
    vm_under="Systems",
    mac_oui="3c:ec:ef",
    mac_upper=True,
    pad="  ",
    push_uri="/redfish/v1/UpdateService/upload",
    start_update=True,
    redfish_version="1.8.0",
)
