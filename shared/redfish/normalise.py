"""Cleaning of values as BMCs serve them.

Vendors pad strings (AMI), fill unset SMBIOS fields with placeholders ("Default string",
"To Be Filled By O.E.M."), mix MAC case and spell enum values loosely. Everything stored by
Racksmith goes through these functions so that equal hardware compares equal.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid as _uuid
from typing import Any

# SMBIOS/firmware defaults seen in the field, compared lower-case and trimmed.
_PLACEHOLDERS = frozenset(
    {
        "default string",
        "to be filled by o.e.m.",
        "to be filled by oem",
        "not specified",
        "not available",
        "not applicable",
        "n/a",
        "na",
        "none",
        "null",
        "unknown",
        "empty",
        "invalid",
        "tbd",
        "sku",
        "system serial number",
        "system sku number",
        "system product name",
        "chassis serial number",
        "base board serial number",
        "default",
        "0123456789",
        "1234567890",
        "123456789",
    }
)
# Strings made only of filler characters ("....", "----", "0000", "    ").
_FILLER = re.compile(r"^[\s.\-_*#0]+$")
# A counting sequence is a template value ("0123456789", "01234567890123456789AB").
_COUNTING = re.compile(r"^0?123456789")
_MAC = re.compile(r"^[0-9a-f]{12}$")

_POWER_STATES = {s.lower(): s for s in ("On", "Off", "PoweringOn", "PoweringOff", "Paused")}
_HEALTH = {s.lower(): s for s in ("OK", "Warning", "Critical")}


def clean_text(value: Any) -> str | None:
    """Trimmed string, or ``None`` for non-strings and empty/blank strings."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None


def is_placeholder(value: str) -> bool:
    """True for firmware filler values that do not identify anything."""
    lowered = value.strip().lower()
    if not lowered or lowered in _PLACEHOLDERS:
        return True
    if _FILLER.match(lowered) or _COUNTING.match(lowered):
        return True
    # One character repeated ("XXXXXXXX", "FFFFFFFF") is a template, not an identifier.
    return len(lowered) >= 4 and len(set(lowered)) == 1


def placeholder(value: Any) -> str | None:
    """`clean_text`, with placeholder values (SKU, serial, asset tag) turned into ``None``."""
    text = clean_text(value)
    if text is None or is_placeholder(text):
        return None
    return text


def mac(value: Any) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` from any common spelling; ``None`` if not a usable MAC.

    Accepts ``:``, ``-`` or ``.`` separators (or none) in any case. The all-zero address is
    what BMCs report for absent or unconfigured ports, so it is treated as missing.
    """
    text = clean_text(value)
    if text is None:
        return None
    digits = re.sub(r"[:\-.]", "", text).lower()
    if not _MAC.match(digits) or digits == "0" * 12:
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def uuid(value: Any) -> str | None:
    """Canonical lower-case UUID (HPE serves upper case, others lower); ``None`` if invalid."""
    text = clean_text(value)
    if text is None:
        return None
    try:
        return str(_uuid.UUID(text))
    except ValueError:
        return None


def _enum(value: Any, known: dict[str, str]) -> str | None:
    text = clean_text(value)
    return known.get(text.lower()) if text is not None else None


def power_state(value: Any) -> str | None:
    """Redfish PowerState in its canonical spelling; ``None`` when absent or unrecognised."""
    return _enum(value, _POWER_STATES)


def health(value: Any) -> str | None:
    """Redfish Health (``OK``/``Warning``/``Critical``); ``None`` when absent or unrecognised."""
    return _enum(value, _HEALTH)


def integer(value: Any) -> int | None:
    """A non-negative whole number from an int, an integral float or a numeric string.

    Vendors send ``"32768"`` or ``32768.0`` where the schema says integer; booleans, negative
    numbers, fractions and words (``"N/A"``) are ``None``. Integers stay exact (drive
    capacities exceed what a float holds).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    text = clean_text(value)
    if text is not None and text.isascii() and text.isdigit():
        return int(text)
    number_ = number(value)
    return int(number_) if number_ is not None and number_.is_integer() else None


def number(value: Any) -> float | None:
    """A finite non-negative number from an int, a float or a numeric string; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    else:
        text = clean_text(value)
        if text is None:
            return None
        try:
            result = float(text)
        except ValueError:
            return None
    return result if math.isfinite(result) and result >= 0 else None


def boolean(value: Any) -> bool | None:
    """A JSON boolean, or the strings ``"true"``/``"false"`` in any case; else ``None``."""
    if isinstance(value, bool):
        return value
    text = clean_text(value)
    if text is not None and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None


def ipv4(value: Any) -> str | None:
    """A usable IPv4 address in dotted form; ``None`` for empty, invalid and ``0.0.0.0``."""
    text = clean_text(value)
    if text is None:
        return None
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    return None if address.is_unspecified else str(address)


def ipv6(value: Any) -> str | None:
    """A usable IPv6 address in compressed lower-case form; ``None`` for empty, invalid, ``::``.

    A zone (``fe80::1%eth0``) is kept, as it is part of what the BMC reports.
    """
    text = clean_text(value)
    if text is None:
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return None if address.is_unspecified else str(address)
