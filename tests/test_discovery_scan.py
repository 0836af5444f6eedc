"""Discovery end to end: the API, a real nats-server, a scanner worker, the BMC lab."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import col, update

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.models import Node, NodeStatus
from shared.platform.runtime import Runtime
from tests.discovery_helpers import (
    events,
    nodes_of_range,
    redfish_addresses,
    scan_to_completion,
    scanner,
)
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.broker, pytest.mark.lab]

FAULTS = "nonredfish@2,hang@3,tlsfail@4,malformed@5,reset@6,redirect@7,badcreds@8"


@pytest.fixture(scope="module")
def scan_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "scan_connect_timeout_s": 0.5,
            "scan_probe_timeout_s": 2.0,
            "scan_progress_interval_s": 0.2,
            "scan_chunk_size": 8,
        }
    )


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(count=14, network=f"{LAB_NET}.150.0/24", latency="0", faults=FAULTS, seed=3)
    async with Lab(config) as running:
        yield running


@pytest.fixture(scope="module")
async def worker(scan_settings: Settings) -> AsyncIterator[Runtime]:
    async with scanner(scan_settings) as runtime:
        yield runtime


async def _create_range(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, network: str
) -> dict[str, Any]:
    response = await client.post(
        "/api/node_discovery/scan_range/",
        json={"name": name, "cidr": network, "ports": [8443]},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_lab_bmc_is_found_once_and_nothing_else(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    worker: Runtime,
    runtime: Runtime,
) -> None:
    scan_range = await _create_range(client, admin_headers, "lab rack", f"{LAB_NET}.150.0/27")
    done = await scan_to_completion(client, admin_headers, scan_range["id"])
    expected = redfish_addresses(lab)
    assert done["status"] == "ready", done
    assert done["addresses_scanned"] == done["addresses_total"] == 30
    assert done["nodes_found"] == len(expected)
    # The hanging address accepted a connection and never answered, even on the second try: the
    # run says a BMC may be missing rather than claiming to have seen everything.
    assert done["addresses_unanswered"] == 1
    assert done["last_warning"].startswith("1 address(es) accepted a TCP connection")

    nodes = await nodes_of_range(client, admin_headers, scan_range["id"])
    assert sorted(n["ip"] for n in nodes) == sorted(expected)
    by_ip = {n["ip"]: n for n in nodes}
    for entry in lab.manifest:
        if entry.address not in expected:
            continue
        node = by_ip[entry.address]
        assert node["status"] == "discovered"
        assert node["url"] == f"https://{entry.address}:8443"
        assert node["product"] == entry.model.strip()
        assert node["redfish_version"]
        assert len(node["fingerprint"]) == 64
    # The guide's step 4: list what is ready to register.
    listed = await client.get(
        f"/api/node/?status=discovered&search={LAB_NET}.150.", headers=admin_headers
    )
    assert {n["ip"] for n in listed.json()["results"]} >= expected

    range_events = await events(runtime, f"racksmith.evt.scan_range.{scan_range['id']}.>")
    assert [e["type"] for e in range_events] == [
        "io.racksmith.scan_range.started",
        "io.racksmith.scan_range.completed",
    ]
    assert range_events[1]["data"]["nodes_found"] == len(expected)
    assert range_events[1]["data"]["addresses_unanswered"] == 1
    discovered = await events(runtime, "racksmith.evt.node.*.discovered")
    ids = {n["id"] for n in nodes}
    mine = [e for e in discovered if e["data"]["id"] in ids]
    assert len(mine) == len(ids)
    assert all(e["specversion"] == "1.0" and e["subject"].startswith("node/") for e in mine)


async def test_rescan_updates_without_duplicating_or_downgrading(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    worker: Runtime,
    runtime: Runtime,
) -> None:
    scan_range = await _create_range(client, admin_headers, "rescan", f"{LAB_NET}.150.0/28")
    await scan_to_completion(client, admin_headers, scan_range["id"])
    first = {n["id"]: n for n in await nodes_of_range(client, admin_headers, scan_range["id"])}
    registered_id = next(iter(first))
    async with runtime.db.session() as session:
        await session.exec(
            update(Node).where(col(Node.id) == registered_id).values(status=NodeStatus.registered)
        )
        await session.commit()

    again = await scan_to_completion(client, admin_headers, scan_range["id"])
    assert again["status"] == "ready"
    second = {n["id"]: n for n in await nodes_of_range(client, admin_headers, scan_range["id"])}
    assert second.keys() == first.keys()
    assert second[registered_id]["status"] == "registered"
    assert all(second[i]["last_seen"] >= first[i]["last_seen"] for i in first)
    total = (await client.get(f"/api/node/?search={LAB_NET}.150.", headers=admin_headers)).json()
    assert total["count"] == len({n["ip"] for n in total["results"]})


async def test_run_scan_does_not_start_a_scanning_range_twice(
    client: httpx.AsyncClient, admin_headers: dict[str, str], lab: Lab, worker: Runtime
) -> None:
    scan_range = await _create_range(client, admin_headers, "twice", f"{LAB_NET}.150.0/29")
    first = await client.post(
        "/api/node_discovery/run_scan/",
        json={"scan_ranges": [scan_range["id"], scan_range["id"]]},
        headers=admin_headers,
    )
    assert first.status_code == 202
    body = first.json()
    assert body["started"] == [scan_range["id"]]
    assert body["scan_ranges"][0]["status"] == "scanning"
    await scan_to_completion(client, admin_headers, scan_range["id"])


async def test_a_new_certificate_is_recorded_but_not_trusted(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    worker: Runtime,
    runtime: Runtime,
) -> None:
    """A rescan records the certificate it sees; trust is registration's business
    (tests/test_certificate_trust.py), so unregistered nodes carry on as discovered."""
    config = LabConfig(count=2, network=f"{LAB_NET}.151.0/24", latency="0", seed=1)
    scan_range = await _create_range(client, admin_headers, "re-keyed", f"{LAB_NET}.151.0/30")
    async with Lab(config):
        await scan_to_completion(client, admin_headers, scan_range["id"])
    before = await nodes_of_range(client, admin_headers, scan_range["id"])
    assert len(before) == 2 and not any(n["trusted_fingerprint"] for n in before)
    async with Lab(config):  # a new lab mints a new CA and new certificates
        await scan_to_completion(client, admin_headers, scan_range["id"])
    after = await nodes_of_range(client, admin_headers, scan_range["id"])
    assert {n["fingerprint"] for n in after}.isdisjoint({n["fingerprint"] for n in before})
    assert all(n["status"] == "discovered" for n in after)
    assert not any(n["fingerprint_changed"] or n["trusted_fingerprint"] for n in after)
    updated = await events(runtime, "racksmith.evt.node.*.updated")
    flagged = [e for e in updated if e["data"]["id"] in {n["id"] for n in after}]
    assert len(flagged) == 2
    assert all(e["data"]["changed"] == ["fingerprint"] for e in flagged)


async def test_forgetting_a_node(
    client: httpx.AsyncClient, admin_headers: dict[str, str], lab: Lab, worker: Runtime
) -> None:
    scan_range = await _create_range(client, admin_headers, "forget", f"{LAB_NET}.150.0/30")
    await scan_to_completion(client, admin_headers, scan_range["id"])
    node = (await nodes_of_range(client, admin_headers, scan_range["id"]))[0]
    assert (
        await client.delete(f"/api/node/{node['id']}/", headers=admin_headers)
    ).status_code == 204
    assert (await client.get(f"/api/node/{node['id']}/", headers=admin_headers)).status_code == 404
