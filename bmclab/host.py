"""The host behind a simulated BMC: power transitions, boots and one-time boot overrides.

A reset becomes a plan of phases (``off``, ``graceful_off``, ``on``) run over time:
``PowerState`` passes through ``PoweringOff``/``PoweringOn`` for the lab's ``power_delay``
(a graceful shutdown takes twice as long), and ``BootProgress.LastState`` walks through a
boot while the host powers on. The boot uses up a ``Once`` override, as BIOS does, in the
same instant the power reaches ``On``. With a delay of 0 every step happens before the
reset's response is sent, so fast tests read back a settled state.

A boot that uses up a one-time override to an installer image (a mounted CD, a UEFI HTTP boot
URI) runs the fake installer (`bmclab.installer`) until the host loses power.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bmclab import installer, updates
from bmclab.faults import FaultKind
from bmclab.outcome import Outcome
from bmclab.tree import Resource, links

if TYPE_CHECKING:
    from bmclab.bmc import Bmc

GRACEFUL_FACTOR = 2.0
_POWER_ON = frozenset({"On", "PoweringOn"})
# Firmware milestones a boot passes, in order (Redfish BootProgressTypes).
_BOOT_STEPS = (
    "PrimaryProcessorInitializationStarted",
    "MemoryInitializationStarted",
    "PCIResourceConfigStarted",
    "SystemHardwareInitializationComplete",
)
Step = tuple[float, Callable[[], None]]


class Host:
    """Power and boot state of one ComputerSystem; its resource body is the state."""

    def __init__(self, bmc: Bmc, path: str) -> None:
        self.bmc = bmc
        self.path = path
        self.off_since: float | None = None
        self.installed: installer.Installed | None = None
        self._task: asyncio.Task[None] | None = None
        self._installer: asyncio.Task[None] | None = None

    @property
    def resource(self) -> Resource:
        resource = self.bmc.store.get(self.path)
        assert resource is not None
        return resource

    def reset(self, reset_type: str) -> Outcome:
        state = self.resource.body.get("PowerState")
        plan = _plan(reset_type, state in _POWER_ON)
        if plan and plan[0] == "on" and self._refuses_power_on(state):
            return Outcome(
                409,
                message="Unable to turn on the server because a power-off operation is in "
                "progress or has just completed.",
                message_id="ResourceInUse",
                resolution="Wait a few seconds for the power-off to complete and retry.",
            )
        if "graceful_off" in plan and self.bmc.has(FaultKind.IGNORE_ACPI):
            plan = []  # the OS never answers the ACPI request: nothing changes
        if plan:
            self._run([step for phase in plan for step in self._steps(phase)])
        return Outcome(204)

    def power_off(self) -> None:
        """Power off from inside the host (an installer that is done, an OS shutting down)."""
        if self.resource.body.get("PowerState") in _POWER_ON:
            self._run(self._steps("off"))

    def _refuses_power_on(self, state: object) -> bool:
        if not self.bmc.rules.on_after_off_conflict:
            return False
        if state == "PoweringOff":
            return True
        holdoff = self.bmc.behaviour.power_on_holdoff
        return (
            state == "Off"
            and self.off_since is not None
            and time.monotonic() - self.off_since < holdoff
        )

    def _steps(self, phase: str) -> list[Step]:
        delay = self.bmc.behaviour.power_delay
        if phase == "on":
            tick = delay / len(_BOOT_STEPS)
            steps: list[Step] = [(0.0, lambda: self._power("PoweringOn", _BOOT_STEPS[0]))]
            steps += [(tick, _progress(self, name)) for name in _BOOT_STEPS[1:]]
            return [*steps, (tick, self._boot_done)]
        if phase == "graceful_off":
            delay *= GRACEFUL_FACTOR
        return [(0.0, lambda: self._power("PoweringOff")), (delay, self._powered_off)]

    def _run(self, steps: list[Step]) -> None:
        if self._task is not None:
            self._task.cancel()  # a new reset replaces a transition still under way
            self._task = None
        while steps and steps[0][0] <= 0:
            steps.pop(0)[1]()
        if steps:
            self._task = self.bmc.spawn(_later(steps))

    def _power(self, state: str, progress: str | None = None) -> None:
        if state not in _POWER_ON and self._installer is not None:
            self._installer.cancel()  # the installer dies with the power
            self._installer = None
        resource = self.resource
        resource.body["PowerState"] = state
        if progress is not None:
            _set_progress(resource, progress)
        resource.changed()
        # Keep the chassis in step with the system it contains.
        for chassis in links(resource.body.get("Links", {}).get("Chassis", [])):
            target = self.bmc.store.get(chassis)
            if target is not None and "PowerState" in target.body:
                target.body["PowerState"] = state
                target.changed()

    def _powered_off(self) -> None:
        self.off_since = time.monotonic()
        self._power("Off", "None")

    def _boot_done(self) -> None:
        boot = self.resource.body.get("Boot")
        entered = "OSRunning"
        enabled = boot.get("BootSourceOverrideEnabled") if isinstance(boot, dict) else None
        image: str | None = None
        if isinstance(boot, dict) and enabled in ("Once", "Continuous"):
            if boot.get("BootSourceOverrideTarget") == "BiosSetup":
                entered = "SetupEntered"
            image = installer.boot_source(self, boot)
            if image is not None:
                entered = "OSBootStarted"
            if enabled == "Once":
                boot["BootSourceOverrideEnabled"] = "Disabled"
                boot["BootSourceOverrideTarget"] = "None"
                self.bmc.counters.overrides_consumed += 1
        self.off_since = None
        self.bmc.counters.boots += 1
        updates.host_booted(self.bmc, self.path)
        if image is None and self.installed is not None and self.installed.hostname:
            self.resource.body["HostName"] = self.installed.hostname
        self._power("On", entered)
        if image is not None:
            self._installer = self.bmc.spawn(installer.run(self, image))


def _plan(reset_type: str, powered: bool) -> list[str]:
    """The phases a reset type means from the current power state (Nmi and the like: none)."""
    if reset_type in ("On", "ForceOn"):
        return [] if powered else ["on"]
    if reset_type == "ForceOff":
        return ["off"] if powered else []
    if reset_type == "GracefulShutdown":
        return ["graceful_off"] if powered else []
    if reset_type == "PushPowerButton":
        return ["graceful_off"] if powered else ["on"]
    if reset_type in ("ForceRestart", "PowerCycle"):
        return ["off", "on"] if powered else ["on"]
    if reset_type == "GracefulRestart":
        return ["graceful_off", "on"] if powered else ["on"]
    return []


def _progress(host: Host, name: str) -> Callable[[], None]:
    def step() -> None:
        resource = host.resource
        if _set_progress(resource, name):
            resource.changed()

    return step


def _set_progress(resource: Resource, name: str) -> bool:
    """Record a boot milestone where the system reports BootProgress (recorded trees may not)."""
    progress = resource.body.get("BootProgress")
    if not isinstance(progress, dict):
        return False
    progress["LastState"] = name
    progress["LastStateTime"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return True


async def _later(steps: list[Step]) -> None:
    for delay, apply in steps:
        if delay > 0:
            await asyncio.sleep(delay)
        apply()
