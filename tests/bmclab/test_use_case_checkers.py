"""DMTF's Redfish Use Case Checkers against every lab flavour: PowerControl and BootOverride on
all, QueryParameters on those whose service root advertises ``$expand``.

The tool runs as its own process (``rf_use_case_checkers``) against an in-process lab, one
BMC per flavour at once; its HTML report is parsed and every result of the two use cases
must be PASS, WARN or SKIP, with the operations that matter (resets, the one-time boot being
used up) passing. The tool sleeps between steps (10 s per reset type), hence the run time.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bmclab import Lab, LabConfig
from bmclab.flavours import FLAVOURS
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.lab, pytest.mark.slow]
CHECKER = Path(sys.executable).with_name("rf_use_case_checkers")
CONFIG = LabConfig(
    count=len(FLAVOURS),
    network=f"{LAB_NET}.216.0/24",
    flavours=tuple(FLAVOURS),
    latency="0",
    power_delay=0.5,
)
_SECTION = re.compile(r'<div class="section-header">.*?</span>(.*?)<div class="section-counts">')
_TEST = re.compile(r'<div class="test-name">(.*?)</div>')
_ROW = re.compile(
    r'<tr><td>(.*?)</td><td><span class="badge [\w-]+">(\w+)</span></td><td>(.*?)</td></tr>'
)


@dataclass(frozen=True)
class Result:
    category: str
    test: str
    operation: str
    result: str
    message: str


def parse_report(document: str) -> list[Result]:
    """Every result row of the tool's HTML report, with its use case and test."""
    results: list[Result] = []
    for section in document.split('<div class="section">')[1:]:
        header = _SECTION.search(section)
        assert header is not None, "report layout changed: no section header"
        category = html.unescape(header.group(1)).strip()
        for block in section.split('<div class="test-block')[1:]:
            name = _TEST.search(block)
            assert name is not None, "report layout changed: no test name"
            for operation, result, message in _ROW.findall(block):
                results.append(
                    Result(
                        category,
                        html.unescape(name.group(1)),
                        html.unescape(operation),
                        result,
                        html.unescape(message),
                    )
                )
    return results


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(CONFIG) as running:
        yield running


async def _run_checker(
    url: str, report_dir: Path, tests: tuple[str, ...] = ("PowerControl", "BootOverride")
) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    process = await asyncio.create_subprocess_exec(
        str(CHECKER),
        *("--user", CONFIG.username, "--password", CONFIG.password, "--rhost", url),
        *("--report-dir", str(report_dir), "--test-list", *tests),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    output, _ = await process.communicate()
    return await process.wait(), output.decode(errors="replace")


def test_parser_sees_failures() -> None:
    sample = (
        '<div class="section"><div class="section-header"><span class="section-arrow">'
        '&#9660;</span>Boot Override<div class="section-counts"></div></div>'
        '<div class="test-block tb-fail"><div class="test-name">One-Time Boot Override Check'
        '</div><table><tbody><tr><td>Monitoring</td><td><span class="badge badge-fail">FAIL'
        "</span></td><td>did not transition</td></tr></tbody></table></div></div>"
    )
    assert parse_report(sample) == [
        Result(
            "Boot Override",
            "One-Time Boot Override Check",
            "Monitoring",
            "FAIL",
            "did not transition",
        )
    ]


@pytest.mark.timeout(400)
async def test_power_control_and_boot_override_pass_on_every_flavour(
    lab: Lab, tmp_path: Path
) -> None:
    assert CHECKER.exists(), "install the dev extras: redfish-use-case-checkers"
    runs = await asyncio.gather(
        *(_run_checker(entry.url, tmp_path / entry.flavour) for entry in lab.manifest)
    )
    for entry, (returncode, output) in zip(lab.manifest, runs, strict=True):
        reports = list((tmp_path / entry.flavour).rglob("RedfishUseCaseCheckersReport_*.html"))
        assert len(reports) == 1, f"{entry.flavour}: no report\n{output}"
        results = parse_report(reports[0].read_text())
        by_category = {r.category for r in results}
        assert by_category == {"Power Control", "Boot Override"}, entry.flavour
        failed = [r for r in results if r.result not in ("PASS", "WARN", "SKIP")]
        assert not failed, f"{entry.flavour}: {failed}"
        assert returncode == 0, f"{entry.flavour}\n{output}"
        passed = {(r.test, r.operation) for r in results if r.result == "PASS"}
        resets = [op for test, op in passed if test == "Reset Operation"]
        assert any("'ForceOff'" in op for op in resets), entry.flavour
        assert any(op.startswith("Monitoring the power state") for op in resets)
        one_time = [op for test, op in passed if test == "One-Time Boot Override Check"]
        assert any(op.startswith("Monitoring the boot progress") for op in one_time), entry.flavour
        counters = lab.counters(entry.index)
        assert counters["resets_applied"]["ForceOff"] >= 1
        assert counters["overrides_consumed"] >= 1, entry.flavour
        assert counters["patches_applied"], entry.flavour


async def test_query_parameters_pass_on_every_flavour_that_advertises_expand(
    lab: Lab, tmp_path: Path
) -> None:
    assert CHECKER.exists(), "install the dev extras: redfish-use-case-checkers"
    advertising = [
        e
        for e in lab.manifest
        if "ExpandQuery"
        in lab.bmc(e.index).store.body("/redfish/v1").get("ProtocolFeaturesSupported", {})
    ]
    assert {e.flavour for e in advertising} == {"dell", "hpe", "openbmc"}
    runs = await asyncio.gather(
        *(_run_checker(e.url, tmp_path / e.flavour, ("QueryParameters",)) for e in advertising)
    )
    for entry, (returncode, output) in zip(advertising, runs, strict=True):
        reports = list((tmp_path / entry.flavour).rglob("RedfishUseCaseCheckersReport_*.html"))
        assert len(reports) == 1, f"{entry.flavour}: no report\n{output}"
        results = parse_report(reports[0].read_text())
        failed = [r for r in results if r.result not in ("PASS", "WARN", "SKIP")]
        assert not failed, f"{entry.flavour}: {failed}"
        assert returncode == 0, f"{entry.flavour}\n{output}"
        expanded = [r for r in results if r.test == "Expand Query" and r.result == "PASS"]
        # Every form the flavour advertises was exercised and passed (iLO: `.` only).
        assert len(expanded) == (2 if entry.flavour == "hpe" else 6), (entry.flavour, results)
