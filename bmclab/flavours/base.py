"""Shared synthetic Redfish tree builder; vendor flavours supply their differences as data.

Every value comes from a `random.Random` seeded with (lab seed, BMC index), so the same
lab configuration always yields byte-identical trees.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bmclab.rules import HostRules
from bmclab.tree import JsonObject

StorageStyle = Literal["controllers", "inline", "simple"]
OemHook = Callable[[str, "Context"], JsonObject | None]

V1 = "/redfish/v1"

_CPUS: dict[str, tuple[tuple[str, int, str], ...]] = {
    "intel": (
        ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 32, "x86"),
        ("Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz", 16, "x86"),
        ("Intel(R) Xeon(R) Gold 5318Y CPU @ 2.10GHz", 24, "x86"),
    ),
    "amd": (
        ("AMD EPYC 7543 32-Core Processor", 32, "x86"),
        ("AMD EPYC 7313 16-Core Processor", 16, "x86"),
    ),
    "ampere": (("Ampere(R) Altra(R) Processor Q80-30", 80, "ARM"),),
}
_CPU_MANUFACTURER = {"intel": "Intel(R) Corporation", "amd": "AMD", "ampere": "Ampere(R)"}
# Properties a boot target needs; a flavour that advertises the target carries the property.
_TARGET_PROPERTIES = {
    "UefiTarget": "UefiTargetBootSourceOverride",
    "UefiHttp": "HttpBootUri",
    "UefiBootNext": "BootNext",
}


@dataclass(frozen=True)
class Ids:
    """Format strings for member Ids; ``{n}`` is 1-based, ``{i}`` 0-based."""

    cpu: str = "{n}"
    dimm: str = "{n}"
    nic: str = "{n}"
    storage: str = "1"
    controller: str = "0"
    drive: str = "{i}"
    volume: str = "{n}"
    task: str = "{n}"
    vm: tuple[str, ...] = ("1", "2")


@dataclass(frozen=True)
class Flavour:
    name: str
    manufacturer: str | None
    # (model, CPU family) pairs; the family selects plausible CPU models.
    models: tuple[tuple[str, str], ...]
    system_id: str
    manager_id: str
    chassis_id: str
    serial: Callable[[random.Random], str]
    rules: HostRules
    sku: Callable[[random.Random, str], str | None]
    bios_version: Callable[[random.Random], str]
    manager_model: str
    manager_firmware: Callable[[random.Random], str]
    firmware_names: tuple[str, ...]
    firmware_id: Callable[[int, str, str], str]
    version: Callable[[random.Random], str]
    ids: Ids = field(default_factory=Ids)
    storage: tuple[StorageStyle, ...] = ("controllers",)
    storage_name: str = "Storage Controller"
    inventory: str = "FirmwareInventory"
    vm_under: Literal["Managers", "Systems"] | None = "Managers"
    # Id of the slot that takes CDs and DVDs (None: the first); the others take USB sticks.
    vm_cd: str | None = None
    mac_oui: str = "b0:26:28"
    mac_upper: bool = False
    # Appended to free-text values, as AMI firmware leaves fixed-width padding in them.
    pad: str = ""
    # Redfish `SoftwareId` of inventory entry n (1-based) by name; None: not reported.
    software_id: Callable[[int, str], str] | None = None
    # Id of the rollback image entry a BMC lists beside the BIOS and its own firmware (Dell's
    # `Previous-`); None: not listed.
    previous_id: Callable[[int, str, str], str] | None = None
    simple_update: bool = True
    # Supermicro: an upload only stages the image; UpdateService.StartUpdate flashes it.
    start_update: bool = False
    push_uri: str = V1 + "/UpdateService/update"
    redfish_version: str = "1.15.0"
    oem: OemHook | None = None
    # ``ProtocolFeaturesSupported.ExpandQuery`` of the service root; None: no $expand support
    # advertised (the lab then answers $expand with 501).
    expand: JsonObject | None = None


@dataclass
class Context:
    """What an Oem hook may look at while the tree is built."""

    flavour: Flavour
    rng: random.Random
    index: int
    address: str
    serial: str
    model: str
    body: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltTree:
    resources: dict[str, JsonObject]
    manufacturer: str | None
    model: str
    serial: str
    system_ids: tuple[str, ...]


def _ref(path: str) -> JsonObject:
    return {"@odata.id": path}


def _collection(path: str, name: str, odata_type: str, members: list[str]) -> JsonObject:
    return {
        "@odata.id": path,
        "@odata.type": f"#{odata_type}Collection.{odata_type}Collection",
        "Name": name,
        "Members": [_ref(m) for m in members],
        "Members@odata.count": len(members),
    }


def _ok() -> JsonObject:
    return {"State": "Enabled", "Health": "OK"}


class _Builder:
    def __init__(
        self,
        flavour: Flavour,
        rng: random.Random,
        ctx: Context,
        cpu_family: str,
        session_timeout: int,
    ) -> None:
        self.f = flavour
        self.rng = rng
        self.ctx = ctx
        self.cpu_family = cpu_family
        self.session_timeout = session_timeout
        self.username = "root"
        self.bios_version = ""
        self.out: dict[str, JsonObject] = {}
        self.sys = f"{V1}/Systems/{flavour.system_id}"
        self.mgr = f"{V1}/Managers/{flavour.manager_id}"
        self.chassis = f"{V1}/Chassis/{flavour.chassis_id}"

    def put(self, path: str, odata_type: str, body: JsonObject, kind: str | None = None) -> None:
        doc: JsonObject = {"@odata.id": path, "@odata.type": odata_type, **body}
        if kind and self.f.oem:
            self.ctx.body = doc
            oem = self.f.oem(kind, self.ctx)
            if oem:
                doc["Oem"] = oem
        self.out[path] = doc

    def coll(self, path: str, name: str, odata_type: str, ids: list[str]) -> list[str]:
        members = [f"{path}/{i}" for i in ids]
        self.out[path] = _collection(path, name, odata_type, members)
        return members

    def text(self, value: str) -> str:
        return value + self.f.pad

    def mac(self) -> str:
        tail = ":".join(f"{self.rng.randrange(256):02x}" for _ in range(3))
        mac = f"{self.f.mac_oui}:{tail}"
        return mac.upper() if self.f.mac_upper else mac

    def build(self) -> None:
        rng = self.rng
        cpus = rng.randint(1, 2)
        dimms = rng.randrange(4, 33 if cpus == 2 else 17, 2)
        nics = rng.randint(2, 6)
        drives = rng.randint(0, 12)
        firmware = rng.randint(5, 25)
        cpu_model, cores, arch = rng.choice(_CPUS[self.cpu_family])
        dimm_gib = rng.choice((16, 32, 64))
        self.root()
        self.system(cpus, cpu_model, dimms * dimm_gib)
        self.processors(cpus, cpu_model, cores, arch)
        self.memory(dimms, dimm_gib)
        self.nics(nics)
        self.storage(drives)
        self.chassis_tree()
        self.manager()
        self.virtual_media()
        self.update_service(firmware)
        self.services()

    def root(self) -> None:
        f = self.f
        self.put(
            V1 + "/",
            "#ServiceRoot.v1_11_0.ServiceRoot",
            {
                "Id": "RootService",
                "Name": "Root Service",
                "RedfishVersion": f.redfish_version,
                "UUID": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "Vendor": f.manufacturer or "OpenBMC",
                "Product": self.ctx.model,
                "Systems": _ref(V1 + "/Systems"),
                "Chassis": _ref(V1 + "/Chassis"),
                "Managers": _ref(V1 + "/Managers"),
                "UpdateService": _ref(V1 + "/UpdateService"),
                "SessionService": _ref(V1 + "/SessionService"),
                "AccountService": _ref(V1 + "/AccountService"),
                "TaskService": _ref(V1 + "/TaskService"),
                "Links": {"Sessions": _ref(V1 + "/SessionService/Sessions")},
                **(
                    {"ProtocolFeaturesSupported": {"ExpandQuery": dict(f.expand)}}
                    if f.expand is not None
                    else {}
                ),
            },
            kind="root",
        )
        self.out[V1 + "/odata"] = {
            "@odata.context": V1 + "/$metadata",
            "value": [
                {"name": n, "kind": "Singleton", "url": f"{V1}/{n}"}
                for n in (
                    "Systems",
                    "Chassis",
                    "Managers",
                    "UpdateService",
                    "SessionService",
                    "AccountService",
                    "TaskService",
                )
            ],
        }

    def system(self, cpus: int, cpu_model: str, memory_gib: int) -> None:
        f, ctx = self.f, self.ctx
        self.coll(V1 + "/Systems", "Computer System Collection", "ComputerSystem", [f.system_id])
        rules = f.rules
        reset: JsonObject = {"target": f"{self.sys}/Actions/ComputerSystem.Reset"}
        if rules.reset_inline:
            reset["ResetType@Redfish.AllowableValues"] = list(rules.reset_types)
        else:
            info = f"{self.sys}/ResetActionInfo"
            reset["@Redfish.ActionInfo"] = info
            self.put(
                info,
                "#ActionInfo.v1_1_2.ActionInfo",
                {
                    "Id": "ResetActionInfo",
                    "Name": "Reset Action Info",
                    "Parameters": [
                        {
                            "Name": "ResetType",
                            "Required": True,
                            "DataType": "String",
                            "AllowableValues": list(rules.reset_types),
                        }
                    ],
                },
            )
        body: JsonObject = {
            "Id": f.system_id,
            "Name": "System",
            "SystemType": "Physical",
            "Model": self.text(ctx.model),
            "SerialNumber": ctx.serial,
            "SKU": f.sku(self.rng, ctx.serial),
            "UUID": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "BiosVersion": f.bios_version(self.rng),
            "HostName": f"node{ctx.index + 1:04d}",
            "PowerState": "On",
            "Status": _ok(),
            "ProcessorSummary": {"Count": cpus, "Model": self.text(cpu_model), "Status": _ok()},
            "MemorySummary": {"TotalSystemMemoryGiB": memory_gib, "Status": _ok()},
            "Boot": _boot(rules),
            "BootProgress": {"LastState": "OSRunning"},
            "Processors": _ref(self.sys + "/Processors"),
            "Memory": _ref(self.sys + "/Memory"),
            "EthernetInterfaces": _ref(self.sys + "/EthernetInterfaces"),
            "Links": {"Chassis": [_ref(self.chassis)], "ManagedBy": [_ref(self.mgr)]},
            "Actions": {"#ComputerSystem.Reset": reset},
        }
        if f.manufacturer is not None:
            body["Manufacturer"] = self.text(f.manufacturer)
        self.bios_version = str(body["BiosVersion"])
        self.put(self.sys, "#ComputerSystem.v1_16_0.ComputerSystem", body, kind="system")

    def processors(self, count: int, model: str, cores: int, arch: str) -> None:
        ids = [self.f.ids.cpu.format(n=n + 1, i=n) for n in range(count)]
        for n, path in enumerate(
            self.coll(self.sys + "/Processors", "Processors Collection", "Processor", ids)
        ):
            self.put(
                path,
                "#Processor.v1_11_0.Processor",
                {
                    "Id": ids[n],
                    "Name": "Processor",
                    "Socket": f"CPU {n + 1}",
                    "ProcessorType": "CPU",
                    "ProcessorArchitecture": arch,
                    "InstructionSet": "x86-64" if arch == "x86" else "ARM-A64",
                    "Manufacturer": _CPU_MANUFACTURER[self.cpu_family],
                    "Model": self.text(model),
                    "TotalCores": cores,
                    "TotalThreads": cores * (1 if arch == "ARM" else 2),
                    "MaxSpeedMHz": 3500,
                    "Status": _ok(),
                },
                kind="processor",
            )

    def memory(self, count: int, gib: int) -> None:
        ids = [self.f.ids.dimm.format(n=n + 1, i=n) for n in range(count)]
        paths = self.coll(self.sys + "/Memory", "Memory Collection", "Memory", ids)
        for n, path in enumerate(paths):
            self.put(
                path,
                "#Memory.v1_12_0.Memory",
                {
                    "Id": ids[n],
                    "Name": f"DIMM {ids[n]}",
                    "CapacityMiB": gib * 1024,
                    "MemoryDeviceType": "DDR4",
                    "OperatingSpeedMhz": 3200,
                    "Manufacturer": self.text(self.rng.choice(("Samsung", "Micron", "Hynix"))),
                    "PartNumber": self.text(f"M393A{self.rng.randrange(1000, 9999)}DB0-CWE"),
                    "SerialNumber": f"{self.rng.getrandbits(32):08X}",
                    "DeviceLocator": f"DIMM {ids[n]}",
                    "Status": _ok(),
                },
            )

    def nics(self, count: int) -> None:
        ids = [self.f.ids.nic.format(n=n + 1, i=n) for n in range(count)]
        paths = self.coll(
            self.sys + "/EthernetInterfaces",
            "Ethernet Interface Collection",
            "EthernetInterface",
            ids,
        )
        for n, path in enumerate(paths):
            up = n == 0 or self.rng.random() < 0.5
            mac = self.mac()
            self.put(
                path,
                "#EthernetInterface.v1_6_0.EthernetInterface",
                {
                    "Id": ids[n],
                    "Name": "System Ethernet Interface",
                    "MACAddress": mac,
                    "PermanentMACAddress": mac,
                    "SpeedMbps": self.rng.choice((1000, 10000, 25000)) if up else 0,
                    "LinkStatus": "LinkUp" if up else "LinkDown",
                    "InterfaceEnabled": True,
                    # Documentation ranges (RFC 5737 / RFC 3849): never routable.
                    "IPv4Addresses": [
                        {
                            "Address": f"192.0.2.{(self.ctx.index % 250) + 1}",
                            "SubnetMask": "255.255.255.0",
                            "AddressOrigin": "DHCP",
                        }
                    ]
                    if n == 0
                    else [],
                    "IPv6Addresses": [
                        {
                            "Address": f"2001:db8::{self.ctx.index + 1:x}",
                            "PrefixLength": 64,
                            "AddressOrigin": "SLAAC",
                        }
                    ]
                    if n == 0
                    else [],
                    "Status": _ok(),
                },
            )

    def drive(self, path: str, drive_id: str) -> None:
        self.put(
            path,
            "#Drive.v1_9_0.Drive",
            {
                "Id": drive_id,
                "Name": f"Drive {drive_id}",
                "Model": self.text(self.rng.choice(("MZ7LH960HAJR0D3", "ST2000NM003A", "PM1733"))),
                "SerialNumber": self.text(f"S{self.rng.getrandbits(40):010X}"),
                "CapacityBytes": self.rng.choice((960, 1920, 3840)) * 10**9,
                "MediaType": self.rng.choice(("SSD", "HDD")),
                "Protocol": "SAS",
                "Status": _ok(),
            },
        )

    def storage(self, drives: int) -> None:
        f, ids = self.f, self.f.ids
        style = self.rng.choice(f.storage)
        drive_ids = [ids.drive.format(n=n + 1, i=n) for n in range(drives)]
        if style == "simple":
            self.out[self.sys]["SimpleStorage"] = _ref(self.sys + "/SimpleStorage")
            paths = self.coll(
                self.sys + "/SimpleStorage", "Simple Storage Collection", "SimpleStorage", ["1"]
            )
            self.put(
                paths[0],
                "#SimpleStorage.v1_3_0.SimpleStorage",
                {
                    "Id": "1",
                    "Name": self.text("Simple Storage Controller"),
                    "Status": _ok(),
                    "Devices": [
                        {
                            "Name": self.text(f"Disk {d}"),
                            "CapacityBytes": 960 * 10**9,
                            "Status": _ok(),
                        }
                        for d in drive_ids
                    ],
                },
            )
            return
        self.out[self.sys]["Storage"] = _ref(self.sys + "/Storage")
        storage_id = ids.storage
        base = f"{self.sys}/Storage/{storage_id}"
        self.coll(self.sys + "/Storage", "Storage Collection", "Storage", [storage_id])
        drive_paths = [f"{base}/Drives/{d}" for d in drive_ids]
        for path, drive_id in zip(drive_paths, drive_ids, strict=True):
            self.drive(path, drive_id)
        controller: JsonObject = {
            "Name": self.text(f.storage_name),
            "Status": _ok(),
            "Manufacturer": self.text(f.manufacturer or "Broadcom"),
            "FirmwareVersion": f.version(self.rng),
            "SupportedControllerProtocols": ["PCIe"],
            "SupportedDeviceProtocols": ["SAS", "SATA"],
        }
        volume_ids = [ids.volume.format(n=1, i=0)] if drives >= 2 else []
        body: JsonObject = {
            "Id": storage_id,
            "Name": self.text(f.storage_name),
            "Status": _ok(),
            "Drives": [_ref(p) for p in drive_paths],
            "Drives@odata.count": len(drive_paths),
            "Volumes": _ref(base + "/Volumes"),
        }
        if style == "inline":
            body["StorageControllers"] = [
                {"@odata.id": f"{base}#/StorageControllers/0", "MemberId": "0", **controller}
            ]
        else:
            cid = ids.controller
            body["Controllers"] = _ref(base + "/Controllers")
            self.coll(
                base + "/Controllers", "Storage Controller Collection", "StorageController", [cid]
            )
            self.put(
                f"{base}/Controllers/{cid}",
                "#StorageController.v1_6_0.StorageController",
                {"Id": cid, **controller},
            )
        self.put(base, "#Storage.v1_13_0.Storage", body, kind="storage")
        for n, path in enumerate(
            self.coll(base + "/Volumes", "Volume Collection", "Volume", volume_ids)
        ):
            self.put(
                path,
                "#Volume.v1_9_0.Volume",
                {
                    "Id": volume_ids[n],
                    "Name": f"Virtual Disk {n}",
                    "RAIDType": "RAID1",
                    "CapacityBytes": 960 * 10**9,
                    "Status": _ok(),
                    "Links": {"Drives": [_ref(p) for p in drive_paths[:2]]},
                },
            )

    def chassis_tree(self) -> None:
        f, ctx = self.f, self.ctx
        self.coll(V1 + "/Chassis", "Chassis Collection", "Chassis", [f.chassis_id])
        body: JsonObject = {
            "Id": f.chassis_id,
            "Name": "Chassis",
            "ChassisType": "RackMount",
            "Model": self.text(ctx.model),
            "SerialNumber": ctx.serial,
            "PowerState": "On",
            "Status": _ok(),
            "Links": {"ComputerSystems": [_ref(self.sys)], "ManagedBy": [_ref(self.mgr)]},
        }
        if f.manufacturer is not None:
            body["Manufacturer"] = self.text(f.manufacturer)
        self.put(self.chassis, "#Chassis.v1_14_0.Chassis", body, kind="chassis")

    def manager(self) -> None:
        f = self.f
        self.coll(V1 + "/Managers", "Manager Collection", "Manager", [f.manager_id])
        self.put(
            self.mgr,
            "#Manager.v1_10_0.Manager",
            {
                "Id": f.manager_id,
                "Name": "Manager",
                "ManagerType": "BMC",
                "Model": f.manager_model,
                "FirmwareVersion": f.manager_firmware(self.rng),
                "UUID": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "PowerState": "On",
                "Status": _ok(),
                "Links": {
                    "ManagerForServers": [_ref(self.sys)],
                    "ManagerForChassis": [_ref(self.chassis)],
                },
                "Actions": {
                    "#Manager.Reset": {
                        "target": f"{self.mgr}/Actions/Manager.Reset",
                        "ResetType@Redfish.AllowableValues": ["GracefulRestart", "ForceRestart"],
                    }
                },
            },
            kind="manager",
        )

    def virtual_media(self) -> None:
        f = self.f
        if f.vm_under is None:
            return
        owner = self.mgr if f.vm_under == "Managers" else self.sys
        self.out[owner]["VirtualMedia"] = _ref(owner + "/VirtualMedia")
        paths = self.coll(
            owner + "/VirtualMedia", "Virtual Media Services", "VirtualMedia", list(f.ids.vm)
        )
        for vm_id, path in zip(f.ids.vm, paths, strict=True):
            cd = vm_id == (f.vm_cd or f.ids.vm[0])
            self.put(
                path,
                "#VirtualMedia.v1_3_0.VirtualMedia",
                {
                    "Id": vm_id,
                    "Name": "Virtual CD" if cd else "Virtual Removable Media",
                    "MediaTypes": ["CD", "DVD"] if cd else ["USBStick"],
                    "Image": None,
                    "Inserted": False,
                    "WriteProtected": True,
                    "ConnectedVia": "NotConnected",
                    "Actions": {
                        "#VirtualMedia.InsertMedia": {
                            "target": f"{path}/Actions/VirtualMedia.InsertMedia"
                        },
                        "#VirtualMedia.EjectMedia": {
                            "target": f"{path}/Actions/VirtualMedia.EjectMedia"
                        },
                    },
                },
            )

    def update_service(self, count: int) -> None:
        f, rng = self.f, self.rng
        base = f"{V1}/UpdateService/{f.inventory}"
        names = list(f.firmware_names[:2])
        pool = list(f.firmware_names[2:])
        rng.shuffle(pool)
        names += pool[: max(0, count - 2)]
        names += [f"Disk {n} firmware" for n in range(count - len(names))]
        ids, versions, numbers = [], [], []
        for n, name in enumerate(names):
            drawn = f.bios_version(rng) if n == 0 else f.version(rng)
            # The BIOS entry states the version the system runs (drawn anyway: same trees).
            version = self.bios_version if n == 0 else drawn
            versions.append(version)
            ids.append(f.firmware_id(n + 1, name, version))
            numbers.append(n + 1)
        if f.previous_id is not None:
            for n in range(min(2, len(names))):
                names.append(names[n])
                versions.append(_older(versions[n]))
                ids.append(f.previous_id(n + 1, names[n], versions[-1]))
                numbers.append(n + 1)
        paths = self.coll(base, "Firmware Inventory Collection", "SoftwareInventory", ids)
        for n, path in enumerate(paths):
            entry: JsonObject = {
                "Id": ids[n],
                "Name": names[n],
                "Version": versions[n],
                "Updateable": True,
                "Status": _ok(),
            }
            if f.software_id is not None:
                entry["SoftwareId"] = f.software_id(numbers[n], names[n])
            self.put(path, "#SoftwareInventory.v1_4_0.SoftwareInventory", entry)
        body: JsonObject = {
            "Id": "UpdateService",
            "Name": "Update Service",
            "ServiceEnabled": True,
            f.inventory: _ref(base),
            "HttpPushUri": f.push_uri,
            "MultipartHttpPushUri": f.push_uri,
            "MaxImageSizeBytes": 400 * 1024 * 1024,
            "Status": _ok(),
        }
        actions: JsonObject = {}
        if f.simple_update:
            actions["#UpdateService.SimpleUpdate"] = {
                "target": V1 + "/UpdateService/Actions/UpdateService.SimpleUpdate",
                "TransferProtocol@Redfish.AllowableValues": ["HTTP", "HTTPS"],
            }
        if f.start_update:
            actions["#UpdateService.StartUpdate"] = {
                "target": V1 + "/UpdateService/Actions/UpdateService.StartUpdate"
            }
        if actions:
            body["Actions"] = actions
        self.put(V1 + "/UpdateService", "#UpdateService.v1_11_0.UpdateService", body, kind="update")

    def services(self) -> None:
        self.put(
            V1 + "/SessionService",
            "#SessionService.v1_1_8.SessionService",
            {
                "Id": "SessionService",
                "Name": "Session Service",
                "ServiceEnabled": True,
                "SessionTimeout": self.session_timeout,
                "Sessions": _ref(V1 + "/SessionService/Sessions"),
                "Status": _ok(),
            },
        )
        self.coll(V1 + "/SessionService/Sessions", "Session Collection", "Session", [])
        self.put(
            V1 + "/AccountService",
            "#AccountService.v1_10_0.AccountService",
            {
                "Id": "AccountService",
                "Name": "Account Service",
                "ServiceEnabled": True,
                "MinPasswordLength": 8,
                "Accounts": _ref(V1 + "/AccountService/Accounts"),
            },
        )
        accounts = self.coll(
            V1 + "/AccountService/Accounts", "Accounts Collection", "ManagerAccount", ["2"]
        )
        self.put(
            accounts[0],
            "#ManagerAccount.v1_8_0.ManagerAccount",
            {
                "Id": "2",
                "Name": "User Account",
                "UserName": self.username,
                "RoleId": "Administrator",
                "Enabled": True,
                "Locked": False,
            },
        )
        self.put(
            V1 + "/TaskService",
            "#TaskService.v1_2_0.TaskService",
            {
                "Id": "TaskService",
                "Name": "Task Service",
                "ServiceEnabled": True,
                "Tasks": _ref(V1 + "/TaskService/Tasks"),
            },
        )
        self.coll(V1 + "/TaskService/Tasks", "Task Collection", "Task", [])


def _boot(rules: HostRules) -> JsonObject:
    boot: JsonObject = {
        "BootSourceOverrideEnabled": "Disabled",
        "BootSourceOverrideTarget": "None",
        "BootSourceOverrideTarget@Redfish.AllowableValues": list(rules.boot_targets),
        "BootSourceOverrideMode": rules.boot_mode,
    }
    if rules.advertise_enabled:
        boot["BootSourceOverrideEnabled@Redfish.AllowableValues"] = list(rules.boot_enabled)
    if rules.boot_modes:
        boot["BootSourceOverrideMode@Redfish.AllowableValues"] = list(rules.boot_modes)
    for target, prop in _TARGET_PROPERTIES.items():
        if target in rules.boot_targets:
            boot[prop] = None
    return boot


def build_tree(
    flavour: Flavour,
    *,
    seed: int,
    index: int,
    address: str,
    serial: str,
    session_timeout: int,
    username: str = "root",
) -> BuiltTree:
    rng = random.Random(f"tree:{seed}:{index}")
    model, cpu_family = rng.choice(flavour.models)
    ctx = Context(flavour, rng, index, address, serial, model)
    builder = _Builder(flavour, rng, ctx, cpu_family, session_timeout)
    builder.username = username
    builder.build()
    return BuiltTree(builder.out, flavour.manufacturer, model, serial, (flavour.system_id,))


def _older(version: str) -> str:
    """A version below ``version`` in its own scheme: its last non-zero number minus one."""
    parts = re.split(r"(\d+)", version)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].isdigit() and int(parts[i]) > 0:
            parts[i] = str(int(parts[i]) - 1).zfill(len(parts[i]))
            return "".join(parts)
    return version + "-old"


def dotted(rng: random.Random, *parts: int) -> str:
    """A version like 2.15.3 whose components are below the given bounds."""
    return ".".join(str(rng.randrange(p)) for p in parts)


def alnum(
    rng: random.Random, length: int, alphabet: str = "0123456789ABCDEFGHJKLMNPQRSTVWXYZ"
) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))
