"""Inventory resource parsers and value cleaning, without a BMC."""

from __future__ import annotations

from typing import Any

import pytest

from shared.redfish import (
    Drive,
    EthernetInterface,
    FirmwareComponent,
    MemoryModule,
    Processor,
    Storage,
    StorageController,
    Volume,
    normalise,
)

UNSET_V4 = "0.0.0.0"  # noqa: S104 - what BMCs report for an unconfigured port, not a bind


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (32768, 32768),
        ("32768", 32768),
        (" 2400 ", 2400),
        (3200.0, 3200),
        (20266198323167232, 20266198323167232),  # beyond float precision: stays exact
        ("20266198323167232", 20266198323167232),
        (1.5, None),
        (-1, None),
        (True, None),
        ("N/A", None),
        ("²", None),
        ("", None),
        (None, None),
    ],
)
def test_integer(raw: Any, clean: int | None) -> None:
    assert normalise.integer(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [(True, True), (False, False), (" TRUE ", True), ("false", False), ("yes", None), (1, None)],
)
def test_boolean(raw: Any, clean: bool | None) -> None:
    assert normalise.boolean(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "B4:2E:99:BA:DE:16",
        "b4-2e-99-ba-de-16",
        "b42e.99ba.de16",
        "B42E99BADE16",
        " b4:2e:99:ba:de:16 ",
    ],
)
def test_mac_spellings(raw: str) -> None:
    assert normalise.mac(raw) == "b4:2e:99:ba:de:16"


@pytest.mark.parametrize(
    ("raw", "v4", "v6"),
    [
        ("192.0.2.7", "192.0.2.7", None),
        (UNSET_V4, None, None),
        ("::", None, None),
        ("2001:DB8:0::7", None, "2001:db8::7"),
        ("fe80::1%eth0", None, "fe80::1%eth0"),
        ("", None, None),
        ("not an address", None, None),
    ],
)
def test_ip_addresses(raw: str, v4: str | None, v6: str | None) -> None:
    assert (normalise.ipv4(raw), normalise.ipv6(raw)) == (v4, v6)


def test_ethernet_interface() -> None:
    nic = EthernetInterface.parse(
        {
            "@odata.id": "/redfish/v1/Systems/1/EthernetInterfaces/1",
            "Id": "1",
            "Name": "",
            "MACAddress": None,
            "PermanentMACAddress": "3C-EC-EF-01-02-03",
            "SpeedMbps": "25000",
            "IPv4Addresses": [{"Address": UNSET_V4}, {"Address": "192.0.2.1"}, {}, "x"],
            "IPv6Addresses": [{"Address": "::"}, {"Address": "2001:db8::1"}],
            "Status": {"Health": "ok", "State": "Enabled"},
        }
    )
    assert (nic.name, nic.mac_address, nic.speed_mbps) == (None, "3c:ec:ef:01:02:03", 25000)
    assert (nic.ipv4_addresses, nic.ipv6_addresses) == (("192.0.2.1",), ("2001:db8::1",))
    assert (nic.health, nic.state) == ("OK", "Enabled")


@pytest.mark.parametrize(
    "parser",
    [
        Processor,
        MemoryModule,
        EthernetInterface,
        Drive,
        Volume,
        StorageController,
        Storage,
        FirmwareComponent,
    ],
)
@pytest.mark.parametrize("body", [{}, {"Status": "OK", "Members": 3, "Devices": None}])
def test_parsers_tolerate_anything(parser: Any, body: dict[str, Any]) -> None:
    parsed = parser.parse(body)
    assert parsed.id is None


def test_padded_and_placeholder_values() -> None:
    cpu = Processor.parse({"Model": "AMD EPYC 7763 64-Core Processor   ", "TotalCores": "64"})
    assert (cpu.model, cpu.total_cores) == ("AMD EPYC 7763 64-Core Processor", 64)
    dimm = MemoryModule.parse({"SerialNumber": "To Be Filled By O.E.M.", "PartNumber": " X1 "})
    assert (dimm.serial_number, dimm.part_number) == (None, "X1")
    drive = Drive.parse({"SerialNumber": "S455NY0M831393      ", "CapacityBytes": "1000"})
    assert (drive.serial_number, drive.capacity_bytes) == ("S455NY0M831393", 1000)
    firmware = FirmwareComponent.parse({"Version": " 0x15 ", "Updateable": "true"})
    assert (firmware.version, firmware.updateable) == ("0x15", True)


def test_storage_shapes() -> None:
    inline = Storage.parse(
        {
            "@odata.id": "/redfish/v1/Systems/1/Storage/1",
            "Id": "1",
            "StorageControllers": [{"MemberId": "0", "SpeedGbps": 12, "SerialNumber": "C1"}],
        }
    )
    assert inline.source == "Storage" and (inline.drives, inline.volumes) == ((), ())
    controller = inline.controllers[0]
    assert (controller.id, controller.speed_gbps, controller.serial_number) == ("0", 12.0, "C1")
    simple = Storage.parse(
        {
            "@odata.id": "/redfish/v1/Systems/1/SimpleStorage/1",
            "@odata.type": "#SimpleStorage.v1_2_0.SimpleStorage",
            "Id": "1",
            "Name": "Simple Storage Controller",
            "Devices": [{"Name": "Disk 0", "CapacityBytes": 10}, "junk"],
        }
    )
    assert simple.source == "SimpleStorage"
    assert [c.name for c in simple.controllers] == ["Simple Storage Controller"]
    assert [(d.odata_id, d.capacity_bytes) for d in simple.drives] == [
        ("/redfish/v1/Systems/1/SimpleStorage/1#/Devices/0", 10)
    ]
