"""Typed, tolerant views of Redfish resources.

Each resource type is a frozen dataclass with a ``parse(body)`` classmethod. Parsing never fails
on a vendor's shape: missing keys, ``null`` and wrong types become ``None``, strings are cleaned
(`shared.redfish.normalise`), and the untouched body stays available as ``raw`` for vendor
(``Oem``) details. Links are kept as the BMC's own ``@odata.id`` paths (fragment removed); the
session resolves and checks them when they are followed.

To add a resource: subclass `Resource`, declare the fields, and build them in ``parse`` with
the accessors below (`value`, `text`, `link`, `links`, `status`, `identity`) and the normalise
functions. Following links between resources is `shared.redfish.inventory`'s job, not
``parse``'s: a parsed resource only describes its own body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from shared.redfish import firmware_identity, normalise

JsonObject = Mapping[str, Any]


def value(body: JsonObject, *keys: str) -> Any:
    """``body[k1][k2]...``, or ``None`` as soon as a level is missing or not an object."""
    current: Any = body
    for key in keys:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def text(body: JsonObject, *keys: str) -> str | None:
    """A trimmed, non-empty string at ``keys``, else ``None``."""
    return normalise.clean_text(value(body, *keys))


def strip_fragment(odata_id: str) -> str:
    """``/redfish/v1/Chassis/1#/PowerSupplies/0`` → ``/redfish/v1/Chassis/1``."""
    return odata_id.split("#", 1)[0]


def odata_id_of(item: Any) -> str | None:
    """The ``@odata.id`` of a link object (``{"@odata.id": ...}``) without fragment."""
    if isinstance(item, Mapping):
        ref = item.get("@odata.id")
        if isinstance(ref, str) and ref.strip():
            return strip_fragment(ref.strip()) or None
    return None


def link(body: JsonObject, *keys: str) -> str | None:
    """The link at ``keys`` (e.g. ``link(system, "Processors")``), or ``None``."""
    return odata_id_of(value(body, *keys))


def links(body: JsonObject, *keys: str) -> list[str]:
    """The links of an array of link objects (``Drives``, ``Members``), de-duplicated in order.

    Duplicates are dropped because they name the same resource (Intel lists one drive 32 times).
    """
    items = value(body, *keys)
    if not isinstance(items, list):
        return []
    found = (odata_id_of(item) for item in items)
    return list(dict.fromkeys(ref for ref in found if ref is not None))


def status(body: JsonObject) -> dict[str, Any]:
    """``health`` and ``state`` keyword arguments from ``Status`` (the same in every schema)."""
    return {
        "health": normalise.health(value(body, "Status", "Health")),
        "state": text(body, "Status", "State"),
    }


def identity(body: JsonObject) -> dict[str, Any]:
    """``manufacturer``, ``model`` and ``serial_number`` keyword arguments.

    Serial numbers lose firmware placeholders; manufacturer and model are only trimmed (a
    model of "Unknown" still says something about the part).
    """
    return {
        "manufacturer": text(body, "Manufacturer"),
        "model": text(body, "Model"),
        "serial_number": normalise.placeholder(value(body, "SerialNumber")),
    }


def canonical_path(odata_id: str) -> str:
    """A key for comparing links: no fragment and no trailing slash.

    ``/redfish/v1/Systems/`` and ``/redfish/v1/Systems`` name the same resource.
    """
    path = strip_fragment(odata_id)
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


@dataclass(frozen=True, kw_only=True)
class Resource:
    """Fields every Redfish resource has. ``raw`` is the body as served (not compared)."""

    odata_id: str
    id: str | None
    name: str | None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def common(body: JsonObject, fallback_id: str = "") -> dict[str, Any]:
        """Keyword arguments for the `Resource` fields, for use in subclasses' ``parse``."""
        return {
            "odata_id": odata_id_of(body) or fallback_id,
            "id": text(body, "Id"),
            "name": text(body, "Name"),
            "raw": body,
        }


@dataclass(frozen=True, kw_only=True)
class ServiceRoot(Resource):
    redfish_version: str | None
    uuid: str | None
    vendor: str | None
    product: str | None
    systems: str | None
    sessions: str | None
    update_service: str | None = None
    chassis: str | None = None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        vendor = text(body, "Vendor")
        oem = value(body, "Oem")
        if vendor is None and isinstance(oem, Mapping) and oem:
            # Before Redfish 1.5 (and on many BMCs since) the vendor only shows as the Oem key.
            vendor = normalise.clean_text(next(iter(oem)))
        return cls(
            **cls.common(body, "/redfish/v1/"),
            redfish_version=text(body, "RedfishVersion"),
            uuid=normalise.uuid(value(body, "UUID")),
            vendor=vendor,
            product=text(body, "Product"),
            systems=link(body, "Systems"),
            sessions=link(body, "Links", "Sessions"),
            update_service=link(body, "UpdateService"),
            chassis=link(body, "Chassis"),
        )


@dataclass(frozen=True, kw_only=True)
class ComputerSystem(Resource):
    uuid: str | None
    manufacturer: str | None
    model: str | None
    serial_number: str | None
    sku: str | None
    bios_version: str | None
    power_state: str | None
    health: str | None
    state: str | None
    host_name: str | None
    processors: str | None
    memory: str | None
    ethernet_interfaces: str | None
    storage: str | None
    simple_storage: str | None
    # The chassis the system lives in (its drive bays may hold drives no Storage lists).
    chassis: tuple[str, ...] = ()
    # HPE's OEM storage tree: the only view of the disks on some iLO 5 firmware.
    smart_storage: str | None = None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        return cls(
            **cls.common(body),
            uuid=normalise.uuid(value(body, "UUID")),
            manufacturer=text(body, "Manufacturer"),
            model=text(body, "Model"),
            serial_number=normalise.placeholder(value(body, "SerialNumber")),
            sku=normalise.placeholder(value(body, "SKU")),
            bios_version=text(body, "BiosVersion"),
            power_state=normalise.power_state(value(body, "PowerState")),
            health=normalise.health(value(body, "Status", "Health")),
            state=text(body, "Status", "State"),
            host_name=text(body, "HostName"),
            processors=link(body, "Processors"),
            memory=link(body, "Memory"),
            ethernet_interfaces=link(body, "EthernetInterfaces"),
            storage=link(body, "Storage"),
            simple_storage=link(body, "SimpleStorage"),
            chassis=tuple(links(body, "Links", "Chassis")),
            smart_storage=link(body, "Oem", "Hpe", "Links", "SmartStorage"),
        )


@dataclass(frozen=True, kw_only=True)
class Processor(Resource):
    """A member of a system's ``Processors``: CPUs, but also GPUs, FPGAs and absent sockets.

    Nothing is filtered out; use ``processor_type`` and ``state`` (``Absent``) to select.
    """

    socket: str | None
    manufacturer: str | None
    model: str | None
    processor_type: str | None
    instruction_set: str | None
    max_speed_mhz: int | None
    total_cores: int | None
    total_threads: int | None
    health: str | None
    state: str | None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        return cls(
            **cls.common(body),
            **status(body),
            socket=text(body, "Socket"),
            manufacturer=text(body, "Manufacturer"),
            model=text(body, "Model"),
            processor_type=text(body, "ProcessorType"),
            instruction_set=text(body, "InstructionSet"),
            max_speed_mhz=normalise.integer(value(body, "MaxSpeedMHz")),
            total_cores=normalise.integer(value(body, "TotalCores")),
            total_threads=normalise.integer(value(body, "TotalThreads")),
        )


@dataclass(frozen=True, kw_only=True)
class MemoryModule(Resource):
    """A member of a system's ``Memory`` (a DIMM slot; empty slots have ``state`` Absent)."""

    device_locator: str | None
    capacity_mib: int | None
    memory_device_type: str | None
    speed_mhz: int | None
    manufacturer: str | None
    part_number: str | None
    serial_number: str | None
    health: str | None
    state: str | None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        speed = value(body, "OperatingSpeedMhz")
        if speed is None:  # the schema's own spelling is "Mhz"; some services write "MHz"
            speed = value(body, "OperatingSpeedMHz")
        return cls(
            **cls.common(body),
            **status(body),
            device_locator=text(body, "DeviceLocator"),
            capacity_mib=normalise.integer(value(body, "CapacityMiB")),
            memory_device_type=text(body, "MemoryDeviceType"),
            speed_mhz=normalise.integer(speed),
            manufacturer=text(body, "Manufacturer"),
            part_number=normalise.placeholder(value(body, "PartNumber")),
            serial_number=normalise.placeholder(value(body, "SerialNumber")),
        )


def _addresses(body: JsonObject, key: str, clean: Callable[[Any], str | None]) -> tuple[str, ...]:
    """The cleaned ``Address`` of each entry of ``body[key]``, unusable ones dropped, no repeats."""
    items = value(body, key)
    if not isinstance(items, list):
        return ()
    found = (clean(value(item, "Address")) for item in items if isinstance(item, Mapping))
    return tuple(dict.fromkeys(address for address in found if address is not None))


@dataclass(frozen=True, kw_only=True)
class EthernetInterface(Resource):
    """A member of a system's ``EthernetInterfaces``. ``mac_address`` is ``aa:bb:..`` form."""

    mac_address: str | None
    speed_mbps: int | None
    link_status: str | None
    ipv4_addresses: tuple[str, ...]
    ipv6_addresses: tuple[str, ...]
    health: str | None
    state: str | None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        mac = normalise.mac(value(body, "MACAddress"))
        return cls(
            **cls.common(body),
            **status(body),
            mac_address=mac or normalise.mac(value(body, "PermanentMACAddress")),
            speed_mbps=normalise.integer(value(body, "SpeedMbps")),
            link_status=text(body, "LinkStatus"),
            ipv4_addresses=_addresses(body, "IPv4Addresses", normalise.ipv4),
            ipv6_addresses=_addresses(body, "IPv6Addresses", normalise.ipv6),
        )


@dataclass(frozen=True, kw_only=True)
class Drive(Resource):
    """A Storage ``Drives`` member, or an inline ``SimpleStorage`` device.

    Inline devices have no ``@odata.id``; they are named ``<SimpleStorage>#/Devices/<n>``.
    """

    manufacturer: str | None
    model: str | None
    serial_number: str | None
    capacity_bytes: int | None
    media_type: str | None
    protocol: str | None
    health: str | None
    state: str | None

    @classmethod
    def parse(cls, body: JsonObject, *, fallback_id: str = "") -> Self:
        return cls(
            **cls.common(body, fallback_id),
            **identity(body),
            **status(body),
            capacity_bytes=normalise.integer(value(body, "CapacityBytes")),
            media_type=text(body, "MediaType"),
            protocol=text(body, "Protocol"),
        )

    @classmethod
    def parse_smart_storage(cls, body: JsonObject) -> Self:
        """An HPE ``HpeSmartStorageDiskDrive`` (capacity in MiB, the protocol as
        ``InterfaceType``)."""
        return cls(
            **cls.common(body),
            **identity(body),
            **status(body),
            capacity_bytes=_mib(body),
            media_type=text(body, "MediaType"),
            protocol=text(body, "InterfaceType"),
        )


@dataclass(frozen=True, kw_only=True)
class Volume(Resource):
    """A member of a Storage's ``Volumes`` collection (a logical drive)."""

    capacity_bytes: int | None
    raid_type: str | None
    health: str | None
    state: str | None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        return cls(
            **cls.common(body),
            **status(body),
            capacity_bytes=normalise.integer(value(body, "CapacityBytes")),
            raid_type=text(body, "RAIDType"),
        )

    @classmethod
    def parse_smart_storage(cls, body: JsonObject) -> Self:
        """An HPE ``HpeSmartStorageLogicalDrive``: ``Raid`` "1+0" is Redfish's ``RAID10``."""
        raid = text(body, "Raid")
        common = cls.common(body)
        return cls(
            **common | {"name": text(body, "LogicalDriveName") or common["name"]},
            **status(body),
            capacity_bytes=_mib(body),
            raid_type=f"RAID{raid.replace('+', '')}" if raid else None,
        )


@dataclass(frozen=True, kw_only=True)
class StorageController:
    """A storage controller, whichever way the BMC models it.

    Parsed from a ``Controllers`` collection member, an inline ``StorageControllers`` entry
    (``MemberId`` instead of ``Id``) or a ``SimpleStorage`` resource itself (which is one
    controller). ``speed_gbps`` is the controller's ``SpeedGbps``.
    """

    id: str | None
    name: str | None
    manufacturer: str | None
    model: str | None
    firmware_version: str | None
    serial_number: str | None
    speed_gbps: float | None
    health: str | None
    state: str | None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        return cls(
            **identity(body),
            **status(body),
            id=text(body, "Id") or text(body, "MemberId"),
            name=text(body, "Name"),
            firmware_version=text(body, "FirmwareVersion"),
            speed_gbps=normalise.number(value(body, "SpeedGbps")),
            raw=body,
        )

    @classmethod
    def parse_smart_storage(cls, body: JsonObject) -> Self:
        """An HPE ``HpeSmartStorageArrayController`` (firmware under ``Current``)."""
        return cls(
            **identity(body),
            **status(body),
            id=text(body, "Id"),
            name=text(body, "Model") or text(body, "Name"),
            firmware_version=text(body, "FirmwareVersion", "Current", "VersionString"),
            speed_gbps=None,
            raw=body,
        )


# Where a storage entry comes from: a Storage resource, a SimpleStorage one, an HPE Smart Array
# controller (OEM), or the drive bays of a chassis (drives that no storage resource lists).
StorageSource = Literal["Storage", "SimpleStorage", "SmartStorage", "Chassis"]


@dataclass(frozen=True, kw_only=True)
class Storage(Resource):
    """A storage subsystem: its controllers, drives and volumes.

    ``parse`` reads one body: a ``Storage`` gives its inline ``StorageControllers`` (drives and
    volumes are links, filled in by `shared.redfish.inventory`); a ``SimpleStorage`` gives
    itself as the controller and its inline ``Devices`` as drives, with ``source``
    ``"SimpleStorage"``.
    """

    controllers: tuple[StorageController, ...]
    drives: tuple[Drive, ...]
    volumes: tuple[Volume, ...]
    source: StorageSource

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        kind = text(body, "@odata.type") or ""
        if "#SimpleStorage." in kind or (
            isinstance(value(body, "Devices"), list) and value(body, "Drives") is None
        ):
            return cls.parse_simple_storage(body)
        inline = value(body, "StorageControllers")
        entries = inline if isinstance(inline, list) else []
        return cls(
            **cls.common(body),
            controllers=tuple(
                StorageController.parse(c) for c in entries if isinstance(c, Mapping)
            ),
            drives=(),
            volumes=(),
            source="Storage",
        )

    @classmethod
    def parse_simple_storage(cls, body: JsonObject) -> Self:
        common = cls.common(body)
        devices = value(body, "Devices")
        entries = enumerate(devices if isinstance(devices, list) else [])
        return cls(
            **common,
            controllers=(StorageController.parse(body),),
            drives=tuple(
                Drive.parse(device, fallback_id=f"{common['odata_id']}#/Devices/{index}")
                for index, device in entries
                if isinstance(device, Mapping)
            ),
            volumes=(),
            source="SimpleStorage",
        )


def _mib(body: JsonObject) -> int | None:
    mib = normalise.integer(value(body, "CapacityMiB"))
    return None if mib is None else mib * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class UpdateService(Resource):
    """The links of the UpdateService that inventory needs (OpenBMC and Intel only have
    ``SoftwareInventory``; HPE has both)."""

    firmware_inventory: str | None
    software_inventory: str | None

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        return cls(
            **cls.common(body),
            firmware_inventory=link(body, "FirmwareInventory"),
            software_inventory=link(body, "SoftwareInventory"),
        )


@dataclass(frozen=True, kw_only=True)
class FirmwareComponent(Resource):
    """A ``FirmwareInventory`` (or OpenBMC/Intel ``SoftwareInventory``) member.

    ``version`` is free text as the BMC writes it ("3.11 Feb 25 2025", "0x15"). What matching
    needs is kept with it: ``software_id``, ``related_items``, HPE's ``device_class`` and
    ``targets``, and the ``slot`` (`shared.redfish.firmware_identity`): only ``active`` entries
    are the running version.
    """

    version: str | None
    updateable: bool | None
    manufacturer: str | None
    release_date: str | None
    health: str | None
    state: str | None
    software_id: str | None = None
    related_items: tuple[str, ...] = ()
    device_class: str | None = None
    targets: tuple[str, ...] = ()
    slot: str = firmware_identity.Slot.active

    @classmethod
    def parse(cls, body: JsonObject) -> Self:
        return cls(
            **cls.common(body),
            **status(body),
            version=text(body, "Version"),
            updateable=normalise.boolean(value(body, "Updateable")),
            manufacturer=text(body, "Manufacturer"),
            release_date=text(body, "ReleaseDate"),
            software_id=firmware_identity.software_id_of(body),
            related_items=tuple(links(body, "RelatedItem")),
            device_class=firmware_identity.device_class_of(body),
            targets=firmware_identity.targets_of(body),
            slot=firmware_identity.slot_of(body),
        )

    @property
    def is_bmc(self) -> bool:
        return firmware_identity.is_bmc(self.id, self.name, self.device_class, self.related_items)

    @property
    def is_bios(self) -> bool:
        return firmware_identity.is_bios(self.id, self.name, self.device_class, self.related_items)
