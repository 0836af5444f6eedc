"""Power actions onto the ResetTypes a BMC allows, with the fallbacks (no BMC needed)."""

from __future__ import annotations

import pytest

from bmclab.rules import DELL, HPE, OPENBMC, SUPERMICRO
from services.jobs.kinds.power import Move, Unsupported, plan
from shared.models.jobs import PowerAction

ON = Move("On", "On")
FORCE_OFF = Move("ForceOff", "Off")


def resets(action: str, allowed: tuple[str, ...] | None, power: str | None = "On") -> list[str]:
    return [m.reset for m in plan(PowerAction(action), allowed, power)]


@pytest.mark.parametrize(
    ("action", "dell", "hpe", "supermicro", "openbmc"),
    [
        ("on", [], [], [], []),
        ("off", ["ForceOff"], ["ForceOff"], ["ForceOff"], ["ForceOff"]),
        (
            "graceful_shutdown",
            ["GracefulShutdown"],
            ["GracefulShutdown"],
            ["GracefulShutdown"],
            ["GracefulShutdown"],
        ),
        ("restart", ["ForceRestart"], ["ForceRestart"], ["ForceRestart"], ["ForceRestart"]),
        (
            "graceful_restart",
            ["GracefulRestart"],
            ["GracefulRestart"],
            ["GracefulShutdown", "On"],  # AMI: no GracefulRestart
            ["GracefulRestart"],
        ),
        ("power_cycle", ["PowerCycle"], ["ForceOff", "On"], ["ForceOff", "On"], ["PowerCycle"]),
        ("nmi", ["Nmi"], ["Nmi"], None, ["Nmi"]),
    ],
)
def test_each_action_on_each_vendors_reset_types_from_on(
    action: str,
    dell: list[str],
    hpe: list[str],
    supermicro: list[str] | None,
    openbmc: list[str],
) -> None:
    for rules, expected in ((DELL, dell), (HPE, hpe), (SUPERMICRO, supermicro), (OPENBMC, openbmc)):
        if expected is None:
            with pytest.raises(Unsupported) as info:
                plan(PowerAction(action), rules.reset_types, "On")
            assert info.value.code == "unsupported_action"
            assert "Nmi" not in info.value.reason or "allows" in info.value.reason
        else:
            assert resets(action, rules.reset_types) == expected, rules


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("on", ["On"]),
        ("off", []),
        ("graceful_shutdown", []),
        # A restart of a server that is off turns it on.
        ("restart", ["On"]),
        ("graceful_restart", ["On"]),
        ("power_cycle", ["On"]),
    ],
)
def test_from_off(action: str, expected: list[str]) -> None:
    assert resets(action, DELL.reset_types, "Off") == expected
    assert resets(action, None, "PoweringOff") == expected


def test_nmi_needs_a_running_server() -> None:
    with pytest.raises(Unsupported) as info:
        plan(PowerAction.nmi, None, "Off")
    assert info.value.code == "invalid_power_state"


def test_fallbacks_and_what_confirms_each_reset() -> None:
    assert plan(PowerAction.power_cycle, ("On", "ForceOff"), "On") == [FORCE_OFF, ON]
    # No ForceRestart: PowerCycle, else off then on.
    assert resets("restart", ("On", "ForceOff", "PowerCycle")) == ["PowerCycle"]
    assert resets("restart", ("On", "ForceOff")) == ["ForceOff", "On"]
    # No GracefulShutdown: the power button is the operating system's ACPI request.
    assert plan(PowerAction.graceful_shutdown, ("On", "ForceOff", "PushPowerButton"), "On") == [
        Move("PushPowerButton", "Off", graceful=True)
    ]
    assert plan(PowerAction.restart, None, "On") == [Move("ForceRestart", "On", restart=True)]
    assert plan(PowerAction.graceful_restart, None, "On") == [
        Move("GracefulRestart", "On", restart=True, graceful=True)
    ]
    # A BMC that says nothing about its values gets the standard ones.
    assert resets("on", None, "Off") == ["On"]
    assert resets("on", ("ForceOn",), "Off") == ["ForceOn"]


def test_nothing_to_fall_back_to() -> None:
    with pytest.raises(Unsupported) as info:
        plan(PowerAction.off, ("On", "GracefulShutdown"), "On")
    assert info.value.code == "unsupported_action"
    assert "On, GracefulShutdown" in info.value.reason
    with pytest.raises(Unsupported):
        plan(PowerAction.graceful_shutdown, ("On", "ForceOff"), "On")
