"""docs/deploy-os.md's curl session (scripts/deploy-walkthrough.sh) against
``racksmith up --lab 10``: a generated ISO uploaded, deployed to three servers, remove_from_pool
refused meanwhile, every job ``completed`` — and the BMCs agree: each fetched the image, its
installer called home, and it runs the deployed system with no medium left mounted."""

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

SCRIPT = walkthrough_helpers.ROOT / "scripts" / "deploy-walkthrough.sh"
ADMIN_PASSWORD = "deploy-walkthrough-1"
NETWORK = f"{LAB_NET}.86"


def test_the_docs_show_the_script_that_runs() -> None:
    walkthrough_helpers.assert_doc_shows("deploy-os.md", SCRIPT)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_deploy_three_servers(tmp_path: Path) -> None:
    up = walkthrough_helpers.lab_up(tmp_path / "state", NETWORK, ADMIN_PASSWORD)
    try:
        result = up.run_lab_script(SCRIPT, "RACKSMITH")
        out = result.stdout
        deployed = [
            json.loads(line)
            for line in re.findall(r"^\{\"id\".*\"deployment_status\".*$", out, re.MULTILINE)
        ]
        counters = []
        with httpx.Client(base_url=up.url) as api:
            headers = walkthrough_helpers.admin_headers(api, ADMIN_PASSWORD)
            nodes = [
                api.get(f"/api/server/{server['id']}/", headers=headers).json()["node"]
                for server in deployed
            ]
            urls = [api.get(f"/api/node/{n}/", headers=headers).json()["url"] for n in nodes]
        with httpx.Client(verify=False) as lab:  # noqa: S501 - the lab's own certificates
            counters = [lab.get(f"{url}/bmclab/counters").json() for url in urls]
    finally:
        assert up.stop() == 0
    assert result.returncode == 0, result.stderr + out
    assert "Deployment jobs: [" in out
    refused = re.search(r"^remove_from_pool: (\d+) (\{.*\})$", out, re.MULTILINE)
    assert refused and refused.group(1) == "409", out
    conflicts = json.loads(refused.group(2))["conflicts"]
    assert conflicts and all(c["job"] is not None for c in conflicts), conflicts
    watched = re.findall(r"^jobs: (\[.*\])$", out, re.MULTILINE)
    assert watched and any('"await_install"' in line for line in watched), out
    final = json.loads(watched[-1])
    assert [job["state"] for job in final] == ["completed"] * 3, out
    assert len(deployed) == 3
    assert all(s["deployment_status"] == "deployed" and s["locked_by"] is None for s in deployed)
    for count in counters:
        assert count["calls_home"] == 1 and count["seeds_read"] == 1, count
        assert count["deployed_os"] == "tiny-installer.iso"
        assert count["media_bytes"] >= 4 << 20
