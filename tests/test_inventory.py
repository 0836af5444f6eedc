"""Inventory end to end: registration queues a collection, the inventory worker reads every lab
flavour and every recorded mockup, and the server API shows exactly what the BMC's tree holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, update

from bmclab import Lab, LabConfig
from services.inventory.schedule import queue_due
from shared.bmc.facts import firmware_facts
from shared.core.settings import Settings
from shared.models import Server
from shared.platform.runtime import Runtime
from shared.redfish import ComputerSystem, FirmwareComponent
from tests.discovery_helpers import create_profile, discover, events, mockup_dirs, scanner
from tests.lab_net import LAB_NET
from tests.redfish_trees import expected_inventory

pytestmark = [pytest.mark.broker, pytest.mark.lab]

NETWORK = f"{LAB_NET}.195"


@pytest.fixture(scope="module")
async def workers(settings: Settings) -> AsyncIterator[Runtime]:
    fast = settings.model_copy(
        update={
            "scan_connect_timeout_s": 0.5,
            "scan_probe_timeout_s": 2.0,
            "redfish_read_timeout_s": 5.0,
            "inventory_interval_s": 0.0,  # the scheduler is tested on its own below
        }
    )
    async with scanner(fast, ("scanner", "registrar", "inventory")) as runtime:
        yield runtime


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(
        count=4, network=f"{NETWORK}.0/24", latency="0", mockups=tuple(mockup_dirs()), seed=9
    )
    async with Lab(config) as running:
        yield running


async def _servers_of(
    client: httpx.AsyncClient, headers: dict[str, str], node_ids: list[int]
) -> list[dict[str, Any]]:
    servers = []
    for node_id in node_ids:
        servers += (await client.get(f"/api/server/?node={node_id}", headers=headers)).json()[
            "results"
        ]
    return servers


@pytest.fixture(scope="module")
async def inventoried(
    client: httpx.AsyncClient, admin_headers: dict[str, str], lab: Lab, workers: Runtime
) -> dict[str, list[dict[str, Any]]]:
    """address → its servers, once every server's first collection is done."""
    profile = await create_profile(client, admin_headers, [("root", "calvin")])
    done = await discover(
        client, admin_headers, "inventory lab", f"{NETWORK}.1", lab.manifest[-1].address
    )
    nodes = (await client.get(f"/api/node/?scan_range={done['id']}", headers=admin_headers)).json()[
        "results"
    ]
    registered = await client.post(
        "/api/node/register/",
        json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
        headers=admin_headers,
    )
    assert registered.status_code == 200
    by_node = {r["id"]: r for r in registered.json()["results"]}
    async with asyncio.timeout(60):
        while True:
            servers = await _servers_of(client, admin_headers, list(by_node))
            if servers and all(s["inventory_status"] != "pending" for s in servers):
                break
            await asyncio.sleep(0.2)
    ip_of = {n["id"]: n["ip"] for n in nodes}
    result: dict[str, list[dict[str, Any]]] = {}
    for server in servers:
        result.setdefault(ip_of[server["node"]], []).append(server)
    return result


async def _family(
    client: httpx.AsyncClient, headers: dict[str, str], server_id: int, family: str
) -> list[dict[str, Any]]:
    body = (await client.get(f"/api/server/{server_id}/{family}/", headers=headers)).json()
    results: list[dict[str, Any]] = body["results"]
    return results


async def test_inventory_matches_every_tree(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    inventoried: dict[str, list[dict[str, Any]]],
) -> None:
    assert len(mockup_dirs()) >= 1
    for entry in lab.manifest:
        servers = inventoried[entry.address]
        assert len(servers) == entry.system_count, entry.flavour
        for server in servers:
            assert server["inventory_status"] == "collected", (
                entry.flavour,
                server["inventory_error"],
            )
            assert server["last_inventory_at"]
            store = lab.bmc(entry.address).store
            system_path = next(
                p for p in (f"/redfish/v1/Systems/{i}" for i in entry.system_ids) if store.body(p)
            )
            expected = expected_inventory(store, system_path)
            sid = server["id"]
            processors = await _family(client, admin_headers, sid, "processors")
            assert [(p["odata_id"], p["model"], p["total_cores"]) for p in processors] == expected[
                "processors"
            ], entry.flavour
            memory = await _family(client, admin_headers, sid, "memory")
            assert [
                (m["odata_id"], m["serial_number"], m["capacity_mib"]) for m in memory
            ] == expected["memory"], entry.flavour
            nics = await _family(client, admin_headers, sid, "ethernet_interfaces")
            assert [
                (
                    n["odata_id"],
                    n["mac_address"],
                    tuple(n["ipv4_addresses"]),
                    tuple(n["ipv6_addresses"]),
                )
                for n in nics
            ] == expected["nics"], entry.flavour
            assert {n["mac_address"] for n in nics if n["duplicate_mac"]} == expected[
                "duplicate_macs"
            ]
            storages = await _family(client, admin_headers, sid, "storages")
            assert [(s["odata_id"], len(s["drives"]), len(s["volumes"])) for s in storages] == [
                (s["odata_id"], len(s["drives"]), len(s["volumes"])) for s in expected["storage"]
            ], entry.flavour
            firmware = await _family(client, admin_headers, sid, "firmwares")
            assert [(f["odata_id"], f["version"]) for f in firmware] == expected["firmware"], (
                entry.flavour
            )
            # Identity is stored with each entry, and the server's versions are the running
            # ones (shared.redfish.firmware_identity; the rules are tested over every tree in
            # tests/redfish/test_firmware_identity.py).
            parsed = [FirmwareComponent.parse(store.body(f["odata_id"])) for f in firmware]
            assert [
                (f["software_id"], f["slot"], f["related_items"], f["device_class"], f["targets"])
                for f in firmware
            ] == [
                (p.software_id, p.slot, list(p.related_items), p.device_class, list(p.targets))
                for p in parsed
            ], entry.flavour
            system = ComputerSystem.parse(store.body(system_path))
            facts = firmware_facts(system, parsed)
            assert server["bmc_version"] == facts["bmc_version"], entry.flavour
            assert server["bios_version"] == facts.get("bios_version", system.bios_version)


async def test_recollection_replaces_without_duplicates_and_reports_only_changes(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    inventoried: dict[str, list[dict[str, Any]]],
    workers: Runtime,
) -> None:
    server = inventoried[lab.manifest[0].address][0]
    before = await _family(client, admin_headers, server["id"], "memory")
    subject = f"racksmith.evt.server.{server['id']}.inventoried"
    assert len(await events(workers, subject)) == 1  # the first collection

    assert (
        await client.post(f"/api/server/{server['id']}/refresh/", headers=admin_headers)
    ).status_code == 202
    await _wait_for_collection_after(client, admin_headers, server)
    after = await _family(client, admin_headers, server["id"], "memory")
    assert [m["odata_id"] for m in after] == [m["odata_id"] for m in before]
    assert len(await events(workers, subject)) == 1  # nothing changed, nothing reported


async def _wait_for_collection_after(
    client: httpx.AsyncClient, headers: dict[str, str], server: dict[str, Any]
) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            current: dict[str, Any] = (
                await client.get(f"/api/server/{server['id']}/", headers=headers)
            ).json()
            if (
                current["last_inventory_at"] != server["last_inventory_at"]
                or current["inventory_status"] == "error"
            ):
                return current
            await asyncio.sleep(0.1)


async def test_failure_halfway_keeps_the_previous_inventory(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    lab: Lab,
    inventoried: dict[str, list[dict[str, Any]]],
    workers: Runtime,
) -> None:
    entry = lab.manifest[1]
    server = inventoried[entry.address][0]
    families = ("processors", "memory", "ethernet_interfaces", "storages", "firmwares")
    before = {f: await _family(client, admin_headers, server["id"], f) for f in families}
    lab.bmc(entry.address).set_fault("error500")
    try:
        await client.post(f"/api/server/{server['id']}/refresh/", headers=admin_headers)
        current = await _wait_for_collection_after(client, admin_headers, server)
    finally:
        lab.bmc(entry.address).clear_fault()
    assert current["inventory_status"] == "error"
    assert entry.address in current["inventory_error"]
    assert current["last_inventory_at"] == server["last_inventory_at"]
    after = {f: await _family(client, admin_headers, server["id"], f) for f in families}
    assert after == before
    failed = await events(workers, f"racksmith.evt.server.{server['id']}.inventory_failed")
    assert failed and failed[-1]["data"]["inventory_error"] == current["inventory_error"]


async def test_schedule_queues_the_oldest_first_and_spreads_the_load(
    inventoried: dict[str, list[dict[str, Any]]], workers: Runtime
) -> None:
    ids = sorted(s["id"] for servers in inventoried.values() for s in servers)
    long_ago = datetime.now(UTC) - timedelta(days=30)
    async with workers.db.session() as session:
        # Servers other tests left in the shared database are made not due: this tick is ours.
        await session.exec(
            update(Server)
            .where(col(Server.id).not_in(ids))
            .values(inventory_attempted_at=datetime.now(UTC))
        )
        for age, server_id in enumerate(ids[:3]):
            await session.exec(
                update(Server)
                .where(col(Server.id) == server_id)
                .values(inventory_attempted_at=long_ago - timedelta(hours=age))
            )
        await session.commit()
    spread = workers.settings.model_copy(
        update={"inventory_interval_s": 3600.0, "inventory_tick_s": 1.0}
    )
    queued = await queue_due(workers.db, workers.publisher, spread)
    # One tick of a one-hour interval may take ceil(servers / 3600) = 1 server: the oldest.
    assert queued == [ids[2]]
