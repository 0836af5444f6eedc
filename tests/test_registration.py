"""Registration end to end: discovery, an auth profile whose first credential is wrong, the
registrar worker, the BMC lab's synthetic flavours and every recorded mockup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.platform.runtime import Runtime
from tests.discovery_helpers import create_profile, discover, events, mockup_dirs, scanner
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.broker, pytest.mark.lab]

LAB_PASSWORD = "Lab-Registration-Pa55"
NETWORK = f"{LAB_NET}.180"


@pytest.fixture(scope="module")
def reg_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "scan_connect_timeout_s": 0.5,
            "scan_probe_timeout_s": 2.0,
            "scan_progress_interval_s": 0.2,
            "redfish_connect_timeout_s": 2.0,
            "redfish_read_timeout_s": 5.0,
        }
    )


@pytest.fixture(scope="module")
async def workers(reg_settings: Settings) -> AsyncIterator[Runtime]:
    async with scanner(reg_settings, ("scanner", "registrar")) as runtime:
        yield runtime


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(
        count=8,
        network=f"{NETWORK}.0/24",
        latency="0",
        password=LAB_PASSWORD,
        faults="badcreds@3",
        mockups=tuple(mockup_dirs()),
        seed=5,
    )
    async with Lab(config) as running:
        yield running


@pytest.fixture(scope="module")
async def profile_id(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> int:
    return await create_profile(
        client, admin_headers, [("root", "wrong-password-first"), ("root", LAB_PASSWORD)]
    )


@pytest.fixture(scope="module")
async def discovered(
    client: httpx.AsyncClient, admin_headers: dict[str, str], lab: Lab, workers: Runtime
) -> dict[str, dict[str, Any]]:
    last = lab.manifest[-1].address
    done = await discover(client, admin_headers, "registration lab", f"{NETWORK}.1", last)
    assert done["nodes_found"] == len(lab.manifest)
    nodes = (await client.get(f"/api/node/?scan_range={done['id']}", headers=admin_headers)).json()
    return {n["ip"]: n for n in nodes["results"]}


async def _register(
    client: httpx.AsyncClient, headers: dict[str, str], node_id: int, profile: int, **params: Any
) -> httpx.Response:
    return await client.post(
        f"/api/node/{node_id}/register/",
        json={"auth_profile": profile},
        headers=headers,
        params=params,
    )


async def test_guide_register_every_node(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
    workers: Runtime,
) -> None:
    """Steps 2 and 5 of the walkthrough: every BMC with valid credentials becomes a registered
    node with its servers; a BMC that accepts none of them ends in `error` with the reason."""
    assert len(mockup_dirs()) >= 1, "the shared mockups are part of this test"
    for entry in lab.manifest:
        node = discovered[entry.address]
        response = await _register(client, admin_headers, node["id"], profile_id)
        assert response.status_code == 200, response.text
        body = response.json()
        if entry.credentials_ok:
            assert body["status"] == "registered", (entry.flavour, body["error"])
            assert len(body["servers"]) == entry.system_count, entry.flavour
            assert body["auth_profile"] == profile_id
        else:
            assert body["status"] == "error"
            assert body["error"] == (
                f"no credential of auth profile {profile_id} accepted by {entry.address} (2 tried)"
            )
            assert body["servers"] == []
    for entry in lab.manifest:
        bmc = lab.bmc(entry.address)
        assert bmc.max_sessions <= lab.config.session_limit
        assert bmc.open_sessions == 0, f"{entry.flavour} left a session open"


async def test_servers_carry_the_systems_facts(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
    workers: Runtime,
) -> None:
    """Each server.created event describes a server with its system's facts."""
    created = {
        e["data"]["id"]: e["data"] for e in await events(workers, "racksmith.evt.server.*.created")
    }
    for entry in lab.manifest:
        if not entry.credentials_ok or entry.kind != "synthetic":
            continue
        body = (
            await _register(client, admin_headers, discovered[entry.address]["id"], profile_id)
        ).json()
        assert body["status"] == "registered"
        for server_id in body["servers"]:
            server = created[server_id]
            assert server["bmc_url"] == f"https://{entry.address}:8443"
            assert server["serial_number"] == entry.serial
            assert server["manufacturer"] == (entry.manufacturer or "").strip()


async def test_reregistering_refreshes_without_duplicates(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
) -> None:
    node = discovered[lab.manifest[0].address]
    first = (await _register(client, admin_headers, node["id"], profile_id)).json()
    second = (await _register(client, admin_headers, node["id"], profile_id)).json()
    assert second["status"] == "registered"
    assert second["servers"] == first["servers"]


async def test_events_come_in_order_for_a_node(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
    workers: Runtime,
) -> None:
    node = discovered[lab.manifest[1].address]
    await _register(client, admin_headers, node["id"], profile_id)
    history = [
        e["type"].rsplit(".", 1)[1]
        for e in await events(workers, f"racksmith.evt.node.{node['id']}.*")
    ]
    assert history[0] == "discovered"
    # Every registration is `registering` followed by its outcome, never the other way round.
    pairs = history[1:]
    assert pairs and len(pairs) % 2 == 0
    assert all(
        pairs[i] == "registering" and pairs[i + 1] == "registered" for i in range(0, len(pairs), 2)
    )


async def test_wait_zero_answers_at_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
) -> None:
    node = discovered[lab.manifest[2].address]
    response = await _register(client, admin_headers, node["id"], profile_id, wait=0)
    assert response.status_code == 202
    assert response.json()["status"] == "registering"
    async with asyncio.timeout(30):
        while (await client.get(f"/api/node/{node['id']}/", headers=admin_headers)).json()[
            "status"
        ] == "registering":
            await asyncio.sleep(0.1)


async def test_busy_bmc_is_registered_once_it_recovers(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
) -> None:
    entry = lab.manifest[4]
    lab.bmc(entry.address).set_fault("busy:3")
    response = await _register(client, admin_headers, discovered[entry.address]["id"], profile_id)
    assert response.status_code == 200
    assert response.json()["status"] == "registered"
    assert lab.bmc(entry.address).open_sessions == 0


async def test_bulk_registration(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
) -> None:
    ids = [discovered[e.address]["id"] for e in lab.manifest if e.credentials_ok]
    response = await client.post(
        "/api/node/register/",
        json={"nodes": ids, "auth_profile": profile_id},
        headers=admin_headers,
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == ids
    assert all(r["status"] == "registered" and r["servers"] for r in results)


async def test_register_input_errors(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    discovered: dict[str, dict[str, Any]],
    profile_id: int,
) -> None:
    node = discovered[lab.manifest[0].address]
    unknown = await _register(client, admin_headers, node["id"], 987654)
    assert unknown.status_code == 400 and "auth_profile" in unknown.json()
    empty = await create_profile(client, admin_headers, [])
    no_credentials = await _register(client, admin_headers, node["id"], empty)
    assert no_credentials.status_code == 400 and "auth_profile" in no_credentials.json()
    assert (await _register(client, admin_headers, 987654, profile_id)).status_code == 404
    bulk = await client.post(
        "/api/node/register/",
        json={"nodes": [node["id"], 987654], "auth_profile": profile_id},
        headers=admin_headers,
    )
    assert bulk.status_code == 400 and "nodes" in bulk.json()
    empty_bulk = await client.post(
        "/api/node/register/", json={"nodes": [], "auth_profile": profile_id}, headers=admin_headers
    )
    assert empty_bulk.status_code == 400 and "nodes" in empty_bulk.json()
