"""Ordering firmware version strings as BMCs report them — only where a scheme says how.

Vendor versions are not semver: `2.13.3`, `U30 v2.72 (03/28/2023)`, `1.45 Mar 08 2022`, `0x15`,
`11A-1.02`, `SE5C620.86B.02.01.0008.C0001.031920191559`, `C27`. Compliance itself is an exact
match of the string the BMC reports; this module only says whether a different version is an
upgrade or a downgrade, and answers ``None`` (unknown) whenever the two strings do not follow one
recognised scheme — never a guess. Schemes:

- ``dotted``: numbers and dots (`2.13.3`, `v1.2`), also followed by a release date as iLO and
  OpenBMC write it (`3.11 Feb 25 2025`, `1.45 Mar 08 2022`: the date belongs to that release);
- ``rom:<family>``: HPE and DMTF system ROMs (`U46 v2.34 (03/11/2025)`, `P79 v1.45`): ordered
  within one ROM family only (`U46` against `U46`);
- ``hex``: `0x15` (CPLDs, microcode);
- ``prefixed:<prefix>``: a fixed prefix, a dash and a dotted number (`11A-1.02`), within one
  prefix.

Numbers compare numerically, missing trailing parts as zero (`2.1` < `2.1.1`, `2.10` > `2.9`).
"""

from __future__ import annotations

import re

_DOTTED = re.compile(r"^v?(\d+(?:\.\d+)*)$", re.IGNORECASE)
_DATED = re.compile(r"^(\d+(?:\.\d+)*) [A-Z][a-z]{2} \d{1,2} \d{4}$")
_ROM = re.compile(r"^([A-Z]\d+) v(\d+(?:\.\d+)*)(?: \(\d{2}/\d{2}/\d{4}\))?$")
_HEX = re.compile(r"^0x([0-9a-f]+)$", re.IGNORECASE)
_PREFIXED = re.compile(r"^([0-9A-Za-z]+)-(\d+(?:\.\d+)*)$")

Key = tuple[str, tuple[int, ...]]


def _numbers(dotted: str) -> tuple[int, ...]:
    return tuple(int(part) for part in dotted.split("."))


def scheme_key(version: str) -> Key | None:
    """The scheme ``version`` follows and its numbers, or ``None`` if it follows none."""
    text = version.strip()
    for pattern in (_DOTTED, _DATED):
        match = pattern.match(text)
        if match:
            return "dotted", _numbers(match.group(1))
    rom = _ROM.match(text)
    if rom:
        return f"rom:{rom.group(1).upper()}", _numbers(rom.group(2))
    hexadecimal = _HEX.match(text)
    if hexadecimal:
        return "hex", (int(hexadecimal.group(1), 16),)
    prefixed = _PREFIXED.match(text)
    if prefixed and not prefixed.group(1).isdigit():
        return f"prefixed:{prefixed.group(1).upper()}", _numbers(prefixed.group(2))
    return None


def _padded(numbers: tuple[int, ...], length: int) -> tuple[int, ...]:
    return numbers + (0,) * (length - len(numbers))


def compare(current: str, target: str) -> int | None:
    """-1 if ``current`` is older than ``target``, 1 if newer, 0 if the same string; ``None``
    when no single scheme orders them, or when they are spelled differently but order equal
    (`2.1` and `2.1.0`: the BMC would not report the target's string)."""
    if current.strip() == target.strip():
        return 0
    a, b = scheme_key(current), scheme_key(target)
    if a is None or b is None or a[0] != b[0]:
        return None
    length = max(len(a[1]), len(b[1]))
    left, right = _padded(a[1], length), _padded(b[1], length)
    if left == right:
        return None
    return -1 if left < right else 1
