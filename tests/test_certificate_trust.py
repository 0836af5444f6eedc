"""The TLS trust of a node's BMC: an impostor that takes over a registered BMC's address never
receives a credential — not after a rescan, not on a refresh, not on a re-registration — until
a superuser accepts its certificate.

The lab's ``impersonate`` serves another CA's certificate at the BMC's address (same tree, same
credentials), and records every credential offered over a connection that presented it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.platform.runtime import Runtime
from tests.discovery_helpers import create_profile, events, scan_to_completion, scanner
from tests.lab_net import LAB_NET
from tests.redfish.redfish_helpers import peer_fingerprint

pytestmark = [pytest.mark.broker, pytest.mark.lab]

NETWORK = f"{LAB_NET}.220"
PASSWORD = "Trust-Lab-Pa55"


@pytest.fixture(scope="module")
async def workers(settings: Settings) -> AsyncIterator[Runtime]:
    fast = settings.model_copy(
        update={
            "scan_connect_timeout_s": 0.5,
            "scan_probe_timeout_s": 2.0,
            "redfish_connect_timeout_s": 2.0,
            "redfish_read_timeout_s": 5.0,
            "inventory_interval_s": 0.0,
        }
    )
    async with scanner(fast, ("scanner", "registrar", "inventory")) as runtime:
        yield runtime


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(count=1, network=f"{NETWORK}.0/24", latency="0", password=PASSWORD)
    async with Lab(config) as running:
        yield running


@pytest.fixture(scope="module")
async def scan_range(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> int:
    created = await client.post(
        "/api/node_discovery/scan_range/",
        json={"name": "trust", "ip_from": f"{NETWORK}.1", "ip_to": f"{NETWORK}.1", "ports": [8443]},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    scan_range_id: int = created.json()["id"]
    return scan_range_id


@pytest.fixture(scope="module")
async def profile(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> int:
    # Two credentials: after a certificate mismatch not even the second may be offered.
    return await create_profile(
        client, admin_headers, [("root", "a-wrong-one-first"), ("root", PASSWORD)]
    )


async def _fresh_node(client: httpx.AsyncClient, headers: dict[str, str], scan_range: int) -> Any:
    """The lab's node as scanned now. Each test starts a new lab (new certificates) at the same
    address: what an earlier test's node trusted is accepted anew."""
    node = await _scan(client, headers, scan_range)
    if node["status"] == "certificate_changed":
        url = f"/api/node/{node['id']}/accept_certificate/"
        accepted = await client.post(url, headers=headers)
        assert accepted.status_code == 200, accepted.text
        node = accepted.json()
    return node


async def _scan(client: httpx.AsyncClient, headers: dict[str, str], scan_range: int) -> Any:
    await scan_to_completion(client, headers, scan_range)
    nodes = (await client.get(f"/api/node/?scan_range={scan_range}", headers=headers)).json()
    assert nodes["count"] == 1
    return nodes["results"][0]


async def _register(
    client: httpx.AsyncClient, headers: dict[str, str], node_id: int, profile: int
) -> Any:
    response = await client.post(
        f"/api/node/{node_id}/register/", json={"auth_profile": profile}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _outcome(server: Any) -> tuple[Any, ...]:
    return server["inventory_status"], server["inventory_error"], server["last_inventory_at"]


async def _inventory_after(client: httpx.AsyncClient, headers: dict[str, str], before: Any) -> Any:
    """The server once a collection outcome other than ``before``'s has been recorded."""
    async with asyncio.timeout(30):
        while True:
            server = (await client.get(f"/api/server/{before['id']}/", headers=headers)).json()
            if server["inventory_status"] != "pending" and _outcome(server) != _outcome(before):
                return server
            await asyncio.sleep(0.1)


async def _refresh(client: httpx.AsyncClient, headers: dict[str, str], server: Any) -> Any:
    queued = await client.post(f"/api/server/{server['id']}/refresh/", headers=headers)
    assert queued.status_code == 202
    return await _inventory_after(client, headers, server)


async def _registered_with_inventory(
    client: httpx.AsyncClient, headers: dict[str, str], node: Any, profile: int
) -> tuple[Any, Any]:
    registered = await _register(client, headers, node["id"], profile)
    assert registered["status"] == "registered", registered["error"]
    async with asyncio.timeout(30):
        while True:
            url = f"/api/server/{registered['servers'][0]}/"
            server = (await client.get(url, headers=headers)).json()
            collected = server["last_inventory_at"]
            if collected and _when(collected) >= _when(registered["registered_at"]):
                return registered, server
            await asyncio.sleep(0.1)


async def test_rescan_by_an_impostor_stops_bmc_work_until_accepted(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    workers: Runtime,
    runtime: Runtime,
    scan_range: int,
    profile: int,
) -> None:
    bmc = lab.bmc(0)
    real = await peer_fingerprint(bmc.address, bmc.port)
    node = await _fresh_node(client, admin_headers, scan_range)
    registered, server = await _registered_with_inventory(client, admin_headers, node, profile)
    assert registered["trusted_fingerprint"] == registered["fingerprint"] == real

    lab.impersonate(0)
    impostor = await peer_fingerprint(bmc.address, bmc.port)
    assert impostor != real

    # The scan records what it sees, keeps the trust, and stops BMC work for the node.
    node = await _scan(client, admin_headers, scan_range)
    assert node["status"] == "certificate_changed"
    assert node["fingerprint"] == impostor and node["trusted_fingerprint"] == real
    assert node["fingerprint_changed"] is True
    assert f"/api/node/{node['id']}/accept_certificate/" in node["error"]
    changed = await events(runtime, f"racksmith.evt.node.{node['id']}.certificate_changed")
    assert [e["data"]["fingerprint"] for e in changed] == [impostor]

    # A member's refresh and a superuser's re-registration send nothing to the impostor.
    failed = await _refresh(client, admin_headers, server)
    assert failed["inventory_status"] == "error"
    assert "accept_certificate" in failed["inventory_error"]
    again = await _register(client, admin_headers, node["id"], profile)
    assert again["status"] == "certificate_changed" and again["error"] == node["error"]
    assert bmc.impostor_received == []

    # Accepting exactly what was checked: a stale fingerprint is refused, nothing changes.
    url = f"/api/node/{node['id']}/accept_certificate/"
    stale = await client.post(url, json={"fingerprint": real}, headers=admin_headers)
    assert stale.status_code == 409 and impostor in stale.json()["detail"]
    shown = ":".join(impostor[i : i + 2] for i in range(0, 64, 2)).upper()
    accepted = await client.post(url, json={"fingerprint": shown}, headers=admin_headers)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["status"] == "registered" and body["error"] is None
    assert body["trusted_fingerprint"] == impostor and body["fingerprint_changed"] is False
    assert await events(runtime, f"racksmith.evt.node.{node['id']}.certificate_accepted")

    # Work resumes: accepting queued the server's inventory, with the certificate now trusted.
    resumed = await _inventory_after(client, admin_headers, failed)
    assert resumed["inventory_status"] == "collected", resumed["inventory_error"]
    assert bmc.impostor_received == [("root", PASSWORD)]


async def test_a_changed_certificate_at_connection_time_is_caught_before_any_credential(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    workers: Runtime,
    scan_range: int,
    profile: int,
) -> None:
    """No rescan: the impostor is met by the refresh, then by the re-registration."""
    bmc = lab.bmc(0)
    node = await _fresh_node(client, admin_headers, scan_range)
    registered, server = await _registered_with_inventory(client, admin_headers, node, profile)
    trusted = registered["trusted_fingerprint"]

    lab.impersonate(0)
    failed = await _refresh(client, admin_headers, server)
    assert failed["inventory_status"] == "error"
    assert "accept_certificate" in failed["inventory_error"]
    node = (await client.get(f"/api/node/{node['id']}/", headers=admin_headers)).json()
    assert node["status"] == "certificate_changed"
    assert node["trusted_fingerprint"] == trusted
    assert node["fingerprint"] == await peer_fingerprint(bmc.address, bmc.port)

    # The real BMC is back: the node still waits for a person, who accepts the trusted one.
    lab.restore_certificate(0)
    again = await _register(client, admin_headers, node["id"], profile)
    assert again["status"] == "certificate_changed"
    assert bmc.impostor_received == []


async def test_registration_meeting_an_impostor_stops_at_the_handshake(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    workers: Runtime,
    runtime: Runtime,
    scan_range: int,
    profile: int,
) -> None:
    bmc = lab.bmc(0)
    node = await _fresh_node(client, admin_headers, scan_range)
    registered = await _register(client, admin_headers, node["id"], profile)
    assert registered["status"] == "registered"

    lab.impersonate(0)
    again = await _register(client, admin_headers, node["id"], profile)
    assert again["status"] == "certificate_changed", again["error"]
    assert again["trusted_fingerprint"] == registered["trusted_fingerprint"]
    assert again["fingerprint"] == await peer_fingerprint(bmc.address, bmc.port)
    assert bmc.impostor_received == []


async def test_a_profile_with_its_own_tls_policy_decides_alone(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    workers: Runtime,
    scan_range: int,
) -> None:
    """A CA-bundle profile: a rescan seeing another certificate does not stop work (a renewal
    by the CA is legitimate), and a certificate the CA did not issue is refused at the
    handshake, before any credential."""
    created = await client.post(
        "/api/node_discovery/auth_profile/",
        json={
            "node_classification": "BMC lab, CA-verified",
            "bmc": "redfish",
            "ca_bundle": lab.ca_cert_pem.decode(),
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    profile: int = created.json()["id"]
    added = await client.post(
        f"/api/node_discovery/auth_profile/{profile}/credentials/",
        json={"username": "root", "password": PASSWORD},
        headers=admin_headers,
    )
    assert added.status_code == 201
    node = await _fresh_node(client, admin_headers, scan_range)
    _, server = await _registered_with_inventory(client, admin_headers, node, profile)

    lab.impersonate(0)
    bmc = lab.bmc(0)
    node = await _scan(client, admin_headers, scan_range)
    assert node["status"] == "registered" and node["fingerprint_changed"] is True
    failed = await _refresh(client, admin_headers, server)
    assert failed["inventory_status"] == "error"
    assert "CA bundle" in failed["inventory_error"]
    assert bmc.impostor_received == []
