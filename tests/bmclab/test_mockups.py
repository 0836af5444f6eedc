"""Recorded mockups are served as recorded, with auth, sessions and ETags on top."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bmclab_helpers import AUTH, client, mockup_dirs, walk

from bmclab import Lab, LabConfig
from tests.lab_net import LAB_NET

MOCKUPS = mockup_dirs()
pytestmark = pytest.mark.skipif(not MOCKUPS, reason="shared/bmc-mockups not available")


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(count=1, network=f"{LAB_NET}.203.0/24", latency="0", mockups=tuple(MOCKUPS))
    async with Lab(config) as running:
        yield running


def _uri(mockup: Path, index: Path) -> str:
    rel = index.parent.relative_to(mockup).as_posix()
    return "/" + rel


async def test_manifest_lists_mockups(lab: Lab) -> None:
    names = [e.flavour for e in lab.manifest[1:]]
    assert names == [f"mockup:{m.name}" for m in MOCKUPS]
    for entry in lab.manifest[1:]:
        assert entry.kind == "mockup" and entry.system_count == 1


async def test_served_bodies_match_recordings(lab: Lab) -> None:
    async with client(lab, headers=AUTH) as http:
        for entry, mockup in zip(lab.manifest[1:], MOCKUPS, strict=True):
            sessions = lab.bmc(entry.index).sessions_path.rstrip("/")
            checked = 0
            for index in sorted(mockup.rglob("index.json")):
                uri = _uri(mockup, index)
                if uri == sessions:
                    continue  # live session list replaces the recorded one
                async with http.get(entry.url + uri) as resp:
                    assert resp.status == 200, (mockup.name, uri)
                    assert "ETag" in resp.headers
                    served = await resp.read()
                assert json.loads(served) == json.loads(index.read_bytes()), uri
                checked += 1
            assert checked > 50, mockup.name


async def test_walk_keeps_quirks(lab: Lab) -> None:
    """Following links works like on the real thing, broken links included."""
    by_name = {e.flavour.removeprefix("mockup:"): e for e in lab.manifest[1:]}
    async with client(lab, headers=AUTH) as http:
        for name, entry in by_name.items():
            tree = await walk(http, entry.url)
            ok = [p for p, (status, _) in tree.items() if status == 200]
            assert len(ok) > 30, name
            assert all(status in (200, 404) for status, _ in tree.values()), name
        ilo6 = by_name.get("hpe-ilo6-proliant-dl380a-gen11")
        if ilo6 is not None:
            # iLO links lower-case "systems"; a case-sensitive server answers 404 - kept.
            async with http.get(ilo6.url + "/redfish/v1/systems/1/bios") as resp:
                assert resp.status == 404


async def test_sessions_and_actions_on_mockups(lab: Lab) -> None:
    async with client(lab) as http:
        for entry in lab.manifest[1:]:
            bmc = lab.bmc(entry.index)
            creds = {"UserName": "root", "Password": "calvin"}
            async with http.post(entry.url + bmc.sessions_path, json=creds) as resp:
                assert resp.status == 201, entry.flavour
                token = {"X-Auth-Token": resp.headers["X-Auth-Token"]}
                location = resp.headers["Location"]
            system = f"/redfish/v1/Systems/{entry.system_ids[0]}"
            async with http.get(entry.url + system, headers=token) as resp:
                body = await resp.json()
            reset = body.get("Actions", {}).get("#ComputerSystem.Reset")
            if reset:
                async with http.post(
                    entry.url + reset["target"], json={"ResetType": "ForceOff"}, headers=token
                ) as resp:
                    assert resp.status == 204, entry.flavour
            async with http.delete(entry.url + location, headers=token) as resp:
                assert resp.status == 204
