"""Fault kinds a BMC can be given, and the fleet-level fault specification.

Fleet spec: comma-separated items, each one of

* ``KIND=FRACTION`` - that fraction of the fleet (rounded to nearest, seeded choice),
* ``KIND@INDEX`` - the BMC at that 0-based manifest index,
* ``KIND@ADDRESS`` - the BMC at that address.

``KIND`` may carry an argument after a colon: ``busy:30`` (503 for 30 s, then healthy),
``flap:5`` (5 s up, 5 s down, repeating), ``drip:0.2`` (seconds per byte).
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


# Faults handled before TLS, on the raw socket.
SOCKET_FAULTS = frozenset({FaultKind.HANG, FaultKind.TLSFAIL, FaultKind.RESET})


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    arg: float | None = None

    @classmethod
    def parse(cls, spec: str) -> Fault:
        name, _, arg = spec.strip().partition(":")
        try:
            kind = FaultKind(name.strip().lower())
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault {name!r} (known: {known})") from None
        if not arg:
            return cls(kind)
        value = float(arg)
        if value < 0:
            raise ValueError(f"fault argument must be >= 0: {spec!r}")
        return cls(kind, value)

    def __str__(self) -> str:
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
