"""docs/jobs.md's curl session (scripts/jobs-walkthrough.sh) against ``racksmith up --lab 10``:
a one-time PXE boot, a power cycle watched to ``completed`` with power_state following — and the
BMC agrees: one PowerCycle applied, the one-time override used up by the boot."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests import walkthrough_helpers
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SCRIPT = walkthrough_helpers.ROOT / "scripts" / "jobs-walkthrough.sh"
ADMIN_PASSWORD = "jobs-walkthrough-1"
NETWORK = f"{LAB_NET}.89"


def test_the_docs_show_the_script_that_runs() -> None:
    walkthrough_helpers.assert_doc_shows("jobs.md", SCRIPT)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_power_cycle_into_a_one_time_pxe_boot(tmp_path: Path) -> None:
    up = walkthrough_helpers.lab_up(tmp_path / "state", NETWORK, ADMIN_PASSWORD)
    try:
        result = up.run_lab_script(SCRIPT, "RACKSMITH")
        server = json.loads(re.findall(r"^\{\"id\".*\"node\".*$", result.stdout, re.MULTILINE)[0])
        with httpx.Client(base_url=up.url) as api:
            headers = walkthrough_helpers.admin_headers(api, ADMIN_PASSWORD)
            node = api.get(f"/api/node/{server['node']}/", headers=headers).json()
        with httpx.Client(verify=False, auth=("root", "calvin")) as lab:  # noqa: S501 - lab certs
            counters = lab.get(f"{node['url']}/bmclab/counters").json()
            system = lab.get(f"{node['url']}/redfish/v1/Systems/System.Embedded.1").json()
    finally:
        assert up.stop() == 0
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    boot = json.loads(out.split("Boot job:\n", 1)[1].splitlines()[0])
    assert boot["kind"] == "boot" and boot["state"] == "completed", boot
    watched = re.findall(r"^job \d+: (\w+) (\S+), power_state (\w+)$", out, re.MULTILINE)
    assert watched and watched[-1][0] == "completed", out
    # power_state followed the BMC through the cycle and ended On.
    assert {power for _, _, power in watched} - {"On"}, watched
    assert watched[-1][2] == "On"
    summary = json.loads(re.findall(r"^\{\"state\".*$", out, re.MULTILINE)[-1])
    assert summary["state"] == "completed" and summary["progress"] == 100
    assert any("PowerCycle" in text for text in summary["messages"])
    # The BMC: one PowerCycle applied, and the boot used up the one-time PXE override.
    assert counters["resets_applied"] == {"PowerCycle": 1}
    assert counters["overrides_consumed"] == 1
    assert system["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
    assert server["model"].startswith("PowerEdge")
    jobs = [json.loads(line) for line in re.findall(r"^\{\"id\".*\"kind\".*$", out, re.MULTILINE)]
    assert [j["kind"] for j in jobs[-2:]] == ["power", "boot"]
