"""Value cleaning and tolerant parsing, without a BMC."""

from __future__ import annotations

from typing import Any

import pytest

from shared.redfish import ComputerSystem, ServiceRoot, normalise
from shared.redfish.resources import canonical_path, links


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("  R650 ", "R650"), ("", None), ("   ", None), (None, None), (42, None), ("x", "x")],
)
def test_clean_text(raw: Any, clean: str | None) -> None:
    assert normalise.clean_text(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "Default string",
        " DEFAULT STRING ",
        "To Be Filled By O.E.M.",
        "Not Specified",
        "N/A",
        "System Serial Number",
        "0123456789",
        "01234567890123456789AB",
        "None",
        "unknown",
        "....................",
        "0000000000",
        "0",
        "XXXXXXXX",
        "",
        None,
    ],
)
def test_placeholders_become_none(raw: Any) -> None:
    assert normalise.placeholder(raw) is None


@pytest.mark.parametrize("raw", ["MXQ2390RHW", "P28948-B21", "8675309", " GJG9NF512A000302 "])
def test_real_identifiers_are_kept(raw: str) -> None:
    assert normalise.placeholder(raw) == raw.strip()


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("B4:2E:99:BA:DE:15", "b4:2e:99:ba:de:15"),
        ("b4-2e-99-ba-de-15", "b4:2e:99:ba:de:15"),
        ("b42e.99ba.de15", "b4:2e:99:ba:de:15"),
        (" B42E99BADE15 ", "b4:2e:99:ba:de:15"),
        ("00:00:00:00:00:00", None),
        ("b4:2e:99:ba:de", None),
        ("zz:2e:99:ba:de:15", None),
        ("", None),
        (None, None),
    ],
)
def test_mac(raw: Any, clean: str | None) -> None:
    assert normalise.mac(raw) == clean


def test_enums_and_uuid() -> None:
    assert normalise.power_state(" on ") == "On"
    assert normalise.power_state("POWERINGOFF") == "PoweringOff"
    assert normalise.power_state("Reset") is None
    assert normalise.health("ok") == "OK"
    assert normalise.health("Degraded") is None
    assert normalise.uuid("38334C44-4735-534A-3035-4E5031303732") == (
        "38334c44-4735-534a-3035-4e5031303732"
    )
    assert normalise.uuid("not-a-uuid") is None


def test_parsing_tolerates_any_shape() -> None:
    system = ComputerSystem.parse(
        {
            "@odata.id": "/redfish/v1/Systems/Self#/",
            "Status": None,
            "Processors": "not a link",
            "Memory": {"@odata.id": "/redfish/v1/Systems/Self/Memory#frag"},
            "SKU": "To Be Filled By O.E.M.",
            "Model": "X11DPi-N   ",
            "PowerState": 1,
        }
    )
    assert system.odata_id == "/redfish/v1/Systems/Self"
    assert (system.health, system.processors, system.power_state) == (None, None, None)
    assert (system.memory, system.sku, system.model) == (
        "/redfish/v1/Systems/Self/Memory",
        None,
        "X11DPi-N",
    )
    root = ServiceRoot.parse({"Oem": {"Hpe": {}}, "Links": None})
    assert (root.odata_id, root.vendor, root.sessions, root.systems) == (
        "/redfish/v1/",
        "Hpe",
        None,
        None,
    )


def test_link_helpers() -> None:
    drives = {"Drives": [{"@odata.id": "/d/1"}] * 32 + [{"@odata.id": "/d/2#x"}, None]}
    assert links(drives, "Drives") == ["/d/1", "/d/2"]
    assert canonical_path("/redfish/v1/Systems/1/#/Status") == "/redfish/v1/Systems/1"
    assert canonical_path("/") == "/"
