"""OpenBMC bmcweb-like: lower-case path Ids, SoftwareInventory with hash Ids, no
SimpleUpdate, only a multipart push URI."""

from __future__ import annotations

import hashlib

from bmclab.flavours.base import Context, Flavour, Ids, dotted
from bmclab.rules import OPENBMC
from bmclab.tree import JsonObject


def _oem(kind: str, ctx: Context) -> JsonObject | None:
    if kind == "manager":
        return {
            "OpenBmc": {
                "@odata.type": "#OemManager.v1_0_0.Oem",
                "Fan": {"@odata.type": "#OemManager.Fan", "Profile": "Performance"},
            }
        }
    return None


def _hash_id(n: int, name: str, version: str) -> str:
    # bmcweb names images after a hash of their version string.
    return hashlib.sha256(f"{name}:{version}".encode()).hexdigest()[:8]


FLAVOUR = Flavour(
    name="openbmc",
    manufacturer="Wiwynn",
    models=(("Mt.Jade", "ampere"), ("Yosemite V3", "intel"), ("Tioga Pass", "intel")),
    system_id="system",
    manager_id="bmc",
    chassis_id="chassis",
    serial=lambda rng: f"WW{rng.randrange(10**9, 10**10)}",
    rules=OPENBMC,
    sku=lambda rng, serial: None,
    bios_version=lambda rng: f"F0E_3A{rng.randrange(10, 30)}",
    manager_model="OpenBmc",
    manager_firmware=lambda rng: f"2.{rng.randrange(12, 16)}.0-dev-{rng.randrange(100, 999)}",
    firmware_names=(
        "host_bios",
        "bmc_active",
        "cpld",
        "bmc_backup",
        "psu0",
        "psu1",
        "vr_cpu0",
        "vr_cpu1",
        "nic0",
        "retimer0",
    ),
    firmware_id=_hash_id,
    version=lambda rng: dotted(rng, 3, 20, 100),
    ids=Ids(
        cpu="cpu{i}",
        dimm="dimm{i}",
        nic="eth{i}",
        storage="1",
        controller="0",
        drive="drive{i}",
        volume="{n}",
        vm=("Slot_0", "Slot_1"),
    ),
    inventory="SoftwareInventory",
    mac_oui="b4:2e:99",
    simple_update=False,
    redfish_version="1.17.0",
    oem=_oem,
    # bmcweb built with Redfish query support: every form, up to six levels.
    expand={"ExpandAll": True, "Levels": True, "Links": True, "NoLinks": True, "MaxLevels": 6},
)
