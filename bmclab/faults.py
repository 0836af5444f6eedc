"""Fault kinds a BMC can be given, and the fleet-level fault specification.

Fleet spec: comma-separated items, each one of

* ``KIND=FRACTION`` - that fraction of the fleet (rounded to nearest, seeded choice),
* ``KIND@INDEX`` - the BMC at that 0-based manifest index,
* ``KIND@ADDRESS`` - the BMC at that address.

``KIND`` may carry an argument after a colon: ``busy:30`` (503 for 30 s, then healthy),
``flap:5`` (5 s up, 5 s down, repeating), ``drip:0.2`` (seconds per byte), ``slow:2``
(seconds added to every request), ``ghost_mount:2`` (the first 2 inserts mount nothing; 1 without
an argument). The request faults take a selector instead of a number:
``drop_after_apply:ComputerSystem.Reset`` (see `RequestSelector`).
Explicit assignments win over fractions; a BMC has at most one fault.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    BADCREDS = "badcreds"
    HANG = "hang"
    DRIP = "drip"
    BUSY = "busy"
    ERROR500 = "error500"
    MALFORMED = "malformed"
    NONREDFISH = "nonredfish"
    TLSFAIL = "tlsfail"
    RESET = "reset"
    OVERSIZED = "oversized"
    REDIRECT = "redirect"
    FLAP = "flap"
    SESSIONDROP = "sessiondrop"
    SLOW = "slow"
    # Host behaviour: graceful shutdowns are accepted and ignored, the power stays On.
    IGNORE_ACPI = "ignore_acpi"
    # Boot override PATCHes must carry Target, Enabled and Mode together (else 400).
    BOOT_ALL_FIELDS = "boot_all_fields"
    # Virtual media and the installer: InsertMedia answers 204 and mounts nothing (the first N
    # times); the BMC cannot reach any image URL; the installer boots and never finishes.
    GHOST_MOUNT = "ghost_mount"
    IMAGE_UNREACHABLE = "image_unreachable"
    INSTALLER_HANG = "installer_hang"
    # One-shot faults on the next POST/PATCH the selector matches.
    DROP_BEFORE_APPLY = "drop_before_apply"
    DROP_AFTER_APPLY = "drop_after_apply"
    HANG_AFTER_APPLY = "hang_after_apply"
    # Firmware updates (bmclab.updates): the task stops at 50 %, ends in Exception, completes
    # and changes nothing, or cannot fetch its ImageURI; and an update refused for want of a
    # licence (Supermicro's 403).
    UPDATE_STALL = "update_stall"
    UPDATE_FAIL = "update_fail"
    UPDATE_NOOP = "update_noop"
    UPDATE_UNREACHABLE = "update_unreachable"
    NOLICENCE = "nolicence"


# Faults handled before TLS, on the raw socket.
SOCKET_FAULTS = frozenset({FaultKind.HANG, FaultKind.TLSFAIL, FaultKind.RESET})
# Faults aimed at one change request; they fire once, then the BMC is healthy again.
REQUEST_FAULTS = frozenset(
    {FaultKind.DROP_BEFORE_APPLY, FaultKind.DROP_AFTER_APPLY, FaultKind.HANG_AFTER_APPLY}
)


@dataclass(frozen=True)
class RequestSelector:
    """Which change request a request fault fires on.

    Empty matches any POST or PATCH except a session login. Otherwise it is compared
    case-insensitively with the action name (``ComputerSystem.Reset``), its last part
    (``Reset``), the ``ResetType`` of the request (``ForceOff``) or the method (``PATCH``).
    """

    text: str = ""

    def matches(self, method: str, action: str | None, reset_type: str | None) -> bool:
        wanted = self.text.lower()
        if not wanted:
            return True
        names = {method.lower()}
        if action:
            names |= {action.lower().lstrip("#"), action.rsplit(".", 1)[-1].lower()}
        if reset_type:
            names.add(reset_type.lower())
        return wanted in names


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    arg: float | None = None
    selector: RequestSelector | None = None

    @classmethod
    def parse(cls, spec: str) -> Fault:
        name, _, arg = spec.strip().partition(":")
        try:
            kind = FaultKind(name.strip().lower())
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault {name!r} (known: {known})") from None
        if kind in REQUEST_FAULTS:
            return cls(kind, selector=RequestSelector(arg.strip()))
        if not arg:
            return cls(kind)
        value = float(arg)
        if value < 0:
            raise ValueError(f"fault argument must be >= 0: {spec!r}")
        return cls(kind, value)

    def __str__(self) -> str:
        if self.selector is not None and self.selector.text:
            return f"{self.kind.value}:{self.selector.text}"
        if self.arg is None:
            return self.kind.value
        return f"{self.kind.value}:{self.arg:g}"


def assign_faults(spec: str, addresses: Sequence[str], seed: int) -> list[Fault | None]:
    """Resolve a fleet spec to one optional Fault per BMC, deterministically from seed."""
    result: list[Fault | None] = [None] * len(addresses)
    index_of = {addr: i for i, addr in enumerate(addresses)}
    fractions: list[tuple[Fault, float]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if "@" in item:
            fault_text, target = item.split("@", 1)
            fault = Fault.parse(fault_text)
            target = target.strip()
            if target.isdigit():
                idx = int(target)
            else:
                ipaddress.ip_address(target)
                if target not in index_of:
                    raise ValueError(f"fault target {target} is not a lab address")
                idx = index_of[target]
            if not 0 <= idx < len(addresses):
                raise ValueError(f"fault target index {idx} out of range")
            result[idx] = fault
        elif "=" in item:
            fault_text, fraction_text = item.split("=", 1)
            fraction = float(fraction_text)
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"fault fraction must be within [0, 1]: {item!r}")
            fractions.append((Fault.parse(fault_text), fraction))
        else:
            raise ValueError(f"bad fault item {item!r}: use KIND=FRACTION or KIND@TARGET")
    rng = random.Random(f"faults:{seed}")
    free = [i for i, f in enumerate(result) if f is None]
    rng.shuffle(free)
    for fault, fraction in fractions:
        take = round(fraction * len(addresses))
        for idx in free[:take]:
            result[idx] = fault
        free = free[take:]
    return result
