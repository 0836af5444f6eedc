"""What the tests of the docs' curl sessions (scripts/*-walkthrough.sh) share: the check that a
doc shows the script and the library it sources, the lab instance they run against, and an admin
token to ask it afterwards."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.processes import Up

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "scripts" / "walkthrough-lib.sh"


def assert_doc_shows(doc: str, script: Path) -> None:
    """The doc shows what runs: the script after its ``set -euo pipefail`` and the settings and
    functions of the library it sources."""
    text = (ROOT / "docs" / doc).read_text()
    body = script.read_text().split("set -euo pipefail\n", 1)[1].strip()
    library = LIBRARY.read_text()
    library_body = library[library.index('RACKSMITH="') :].strip()
    assert body in text
    assert library_body in text


def lab_up(state: Path, network: str, admin_password: str) -> Up:
    """``racksmith up --lab 10`` on ``network``.0/24 with BMCs slow enough to watch jobs move."""
    lab_args = ["--lab", "10", "--lab-network", f"{network}.0/24", "--lab-latency", "50"]
    return Up(state, *lab_args, env={"RACKSMITH_ADMIN_PASSWORD": admin_password})


def admin_headers(api: httpx.Client, admin_password: str) -> dict[str, str]:
    token = api.post("/api/token/", json={"username": "admin", "password": admin_password}).json()
    return {"Authorization": f"Bearer {token['access']}"}
