"""The guide's "API Training: End-to-End Walkthrough" as a curl + jq script (scripts/walkthrough.sh)
against ``racksmith up --lab 10``, with only the host, addresses, port and passwords changed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bmclab import Lab, LabConfig
from tests.lab_net import LAB_NET
from tests.processes import Up

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD = "walkthrough-admin-1"
NETWORK = f"{LAB_NET}.88"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_guides_walkthrough_runs_unchanged(tmp_path: Path) -> None:
    lab_args = ["--lab", "10", "--lab-network", f"{NETWORK}.0/24", "--lab-latency", "50"]
    up = Up(tmp_path / "state", *lab_args, env={"RACKSMITH_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        result = up.run_lab_script(ROOT / "scripts" / "walkthrough.sh", "MOJOHOST")
    finally:
        assert up.stop() == 0
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    # Every jq path resolved: no id came back null.
    assert '"admin"' in out
    for label in ("Created auth profile", "Created scan range", "Created pool"):
        assert re.search(rf"{label}: \d+\n", out), label
    assert re.search(r"^Scan status: ready$", out, re.MULTILINE)
    nodes = re.search(r"Found nodes: ([\d\s]+?)\nRegistering", out)
    assert nodes and len(nodes.group(1).split()) == 10

    lab = Lab(LabConfig(count=10, network=f"{NETWORK}.0/24"))
    dell = [e for e in lab.build() if e.flavour == "dell"]
    pool_summary, *servers = _json_documents(out.split("Assigning servers:", 1)[1])
    assert pool_summary["assign_servers"]["servers_count"] == len(dell)
    verify = pool_summary["verify"]
    assert verify == {
        "name": "Production - Rack 5",
        "servers_count": len(dell),
        "description": "Dell PowerEdge servers in DC Rack 5",
    }
    assert len(servers) == len(dell)
    for server in servers:
        assert set(server) == {"id", "name", "model", "manufacturer", "power_state"}
        assert server["manufacturer"] == "Dell Inc." and server["model"].startswith("PowerEdge")
        assert server["power_state"] in {"On", "Off"}


def _json_documents(text: str) -> list[dict[str, object]]:
    """The JSON values printed after "Assigning servers:": the id list, the assign_servers
    answer, the pool summary, then one object per server."""
    decoder = json.JSONDecoder()
    documents = []
    index = 0
    while True:
        start = min(
            (i for i in (text.find("{", index), text.find("[", index)) if i >= 0), default=-1
        )
        if start < 0:
            break
        value, index = decoder.raw_decode(text, start)
        documents.append(value)
    _ids, assigned, summary, *servers = documents
    return [{"assign_servers": assigned, "verify": summary}, *servers]
