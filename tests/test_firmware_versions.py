"""Ordering vendor firmware versions: only within one scheme, never a guess."""

from __future__ import annotations

import pytest

from shared.bmc.versions import compare, scheme_key


@pytest.mark.parametrize(
    ("current", "target", "order"),
    [
        ("2.13.3", "2.13.3", 0),
        ("2.13.3", "2.19.1", -1),
        ("2.9", "2.10", -1),  # numbers, not text
        ("2.1", "2.1.1", -1),
        ("2.20.0", "2.19.1", 1),
        ("v1.2", "1.3", -1),
        ("U30 v2.72 (03/28/2023)", "U30 v2.80 (01/17/2025)", -1),
        ("U46 v2.34 (03/11/2025)", "U46 v1.80 (07/05/2023)", 1),
        ("P79 v1.45", "P79 v1.46", -1),
        ("1.45 Mar 08 2022", "1.46 Jan 02 2023", -1),
        ("3.11 Feb 25 2025", "3.10 Jan 01 2025", 1),
        ("0x15", "0x16", -1),
        ("0x0F", "0x15", -1),  # hex, not decimal text
        ("11A-1.02", "11A-1.10", -1),
    ],
)
def test_ordered_within_a_scheme(current: str, target: str, order: int) -> None:
    assert compare(current, target) == order


@pytest.mark.parametrize(
    ("current", "target"),
    [
        # Different ROM families: another platform's ROM is not "newer".
        ("U46 v2.34 (03/11/2025)", "U58 v2.44 (01/17/2025)"),
        # Different schemes.
        ("0x15", "21"),
        ("2.13.3", "U30 v2.72 (03/28/2023)"),
        ("11A-1.02", "12B-1.02"),
        # No scheme at all.
        ("SE5C620.86B.02.01.0008.C0001.031920191559", "SE5C620.86B.02.01.0009.C0001.031920191559"),
        ("C27", "C28"),
        ("1.93.870cf4f0", "1.94.0"),
        ("52.28.3-5681", "52.30.3-5917"),
        # Spelled differently, ordered equal: the BMC would not report the target's string.
        ("2.1", "2.1.0"),
    ],
)
def test_unknown_rather_than_a_guess(current: str, target: str) -> None:
    assert compare(current, target) is None


def test_schemes() -> None:
    assert scheme_key("2.15.0") == ("dotted", (2, 15, 0))
    assert scheme_key("1.66 Dec 13 2024") == ("dotted", (1, 66))
    assert scheme_key("A47 v2.52 (10/29/2021)") == ("rom:A47", (2, 52))
    assert scheme_key("0x31000030") == ("hex", (0x31000030,))
    assert scheme_key("2.15.0-dev-686-g100c36de90") is None
