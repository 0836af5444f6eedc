"""Firmware baselines and compliance over the API: CRUD with list conventions, per-component
reports that ignore backup/previous images and say `unknown` rather than guess, recomputation
when inventory changes, the events, and access like pools."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.inventory import store
from shared.models import FirmwareComponent, Server
from shared.platform.runtime import Runtime
from shared.redfish import ComputerSystem
from shared.redfish import FirmwareComponent as FirmwareEntry
from shared.redfish.inventory import Inventory
from tests.artifacts.helpers import upload
from tests.discovery_helpers import events
from tests.pool_helpers import group_with_member, make_servers

pytestmark = [pytest.mark.broker]

# (Id, Name, SoftwareId, Version) as a Dell iDRAC lists them.
Entry = tuple[str, str, str, str]


def dell_entries(bios: str, *, nic: str = "22.31.6", idrac: str = "7.00.00.171") -> list[Entry]:
    return [
        (f"Installed-159-{bios}", "BIOS", "159", bios),
        ("Previous-159-2.19.1", "BIOS", "159", "2.19.1"),  # never the running version
        (f"Installed-25227-{idrac}", "Integrated Dell Remote Access Controller", "25227", idrac),
        (f"Installed-0-{nic}", "Intel(R) Ethernet 25G 2P E810-XXV Adapter", "0", nic),
    ]


def parsed(entries: list[Entry]) -> list[FirmwareEntry]:
    return [
        FirmwareEntry.parse(
            {
                "@odata.id": f"/redfish/v1/UpdateService/FirmwareInventory/{entry_id}",
                "Id": entry_id,
                "Name": name,
                "SoftwareId": software_id,
                "Version": version,
                "Updateable": True,
            }
        )
        for entry_id, name, software_id, version in entries
    ]


async def set_firmware(runtime: Runtime, server: Server, entries: list[Entry]) -> None:
    """Inventory rows written directly (no recomputation: as before a baseline exists)."""
    async with runtime.db.session() as session:
        row = await session.get(Server, server.id)
        assert row is not None and row.id is not None
        row.last_inventory_at = datetime.now(UTC)
        session.add(row)
        for entry in parsed(entries):
            session.add(
                FirmwareComponent(
                    server_id=row.id,
                    odata_id=entry.odata_id,
                    name=entry.name,
                    component_id=entry.id,
                    version=entry.version,
                    software_id=entry.software_id,
                    slot=entry.slot,
                )
            )
        await session.commit()


async def collect(runtime: Runtime, server: Server, entries: list[Entry]) -> list[str]:
    """An inventory collection finding these entries (what the inventory worker records)."""
    system = ComputerSystem.parse(
        {
            "@odata.id": "/redfish/v1/Systems/System.Embedded.1",
            "Id": "System.Embedded.1",
            "Model": "PowerEdge R650",
            "Manufacturer": "Dell Inc.",
            "SerialNumber": server.serial_number,
            "PowerState": "On",
            "BiosVersion": entries[0][3],
        }
    )
    inventory = Inventory(system, (), (), (), (), tuple(parsed(entries)), frozenset())
    async with runtime.db.session() as session:
        row = await store.locked_server(session, server.id or 0)
        assert row is not None
        changed = await store.record_inventory(session, row, inventory)
        await session.commit()
    return changed


async def add_binary(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, **fields: Any
) -> int:
    response = await upload(
        client, headers, "/api/firmware/", os.urandom(1000), f"{name}.EXE", name=name, **fields
    )
    assert response.status_code == 201, response.text
    firmware_id: int = response.json()["id"]
    return firmware_id


async def compliance_events(runtime: Runtime, server: Server) -> list[dict[str, Any]]:
    subject = f"racksmith.evt.server.{server.id}.firmware_compliance_changed"
    return [e["data"] for e in await events(runtime, subject)]


async def test_baseline_compliance_per_component(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    pool = (
        await client.post("/api/pool/", json={"name": f"fw-{unique}"}, headers=admin_headers)
    ).json()["id"]
    current, behind, ahead, strange, fresh = await make_servers(runtime, f"fw{unique}", 5, pool)
    await set_firmware(runtime, current, dell_entries("2.19.1"))
    await set_firmware(runtime, behind, dell_entries("2.18.1"))
    await set_firmware(runtime, ahead, dell_entries("2.20.0"))
    await set_firmware(runtime, strange, dell_entries("2.19.1", nic="SE5C620.86B.02"))
    # `fresh` was never inventoried.
    bios = await add_binary(
        client,
        admin_headers,
        f"BIOS {unique}",
        firmware_type="BIOS",
        version="2.19.1",
        manufacturer="Dell Inc.",
        models=["PowerEdge R650"],
        apply_requires="host_reboot",
        software_ids=["159"],
    )
    # Dell reports SoftwareId 0 for the NIC: matched by name.
    nic = await add_binary(
        client,
        admin_headers,
        f"NIC {unique}",
        firmware_type="NIC",
        version="22.31.6",
        name_pattern="*E810*",
    )
    # No matching rule: a BMC binary matches the BMC entry.
    idrac = await add_binary(
        client, admin_headers, f"iDRAC {unique}", firmware_type="BMC", version="7.00.00.171"
    )
    # Another vendor's binary is not part of these servers' compliance.
    other = await add_binary(
        client,
        admin_headers,
        f"iLO {unique}",
        firmware_type="BMC",
        version="3.11",
        manufacturer="HPE",
    )

    created = await client.post(
        "/api/firmware_baseline/",
        json={
            "name": f"R650 {unique}",
            "firmware": [bios, nic, idrac, other],
            "manufacturer": "Dell Inc.",
            "models": ["PowerEdge R650"],
            "resource_pool": pool,
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    baseline = created.json()
    assert baseline["firmware"] == [bios, nic, idrac, other]
    assert baseline["resource_pool"] == pool

    report = await client.get(
        f"/api/firmware_baseline/{baseline['id']}/compliance/", headers=admin_headers
    )
    assert report.status_code == 200, report.text
    body = report.json()
    by_server = {r["server"]: r for r in body["results"]}
    assert body["count"] == 5
    assert body["summary"] | {"components": None} == {
        "servers": 5,
        "compliant": 1,
        "non_compliant": 3,
        "unknown": 1,
        "components": None,
    }
    assert body["summary"]["components"] == {
        "compliant": 3 + 2 + 2 + 2,
        "upgrade": 1,
        "downgrade": 1,
        "unknown": 1 + 3,
        "missing": 0,
    }

    def statuses(server: Server) -> dict[int, tuple[str | None, str]]:
        rows = by_server[server.id]["components"]
        return {c["firmware"]: (c["current_version"], c["status"]) for c in rows}

    assert by_server[current.id]["status"] == "compliant"
    # The previous BIOS image (2.19.1) does not make `behind` compliant.
    assert statuses(behind) == {
        bios: ("2.18.1", "upgrade"),
        nic: ("22.31.6", "compliant"),
        idrac: ("7.00.00.171", "compliant"),
    }
    assert statuses(ahead)[bios] == ("2.20.0", "downgrade")
    assert statuses(strange)[nic] == ("SE5C620.86B.02", "unknown")
    assert by_server[fresh.id]["status"] == "unknown"
    bios_row = next(c for c in by_server[behind.id]["components"] if c["firmware"] == bios)
    assert bios_row["reboot_required"] is True
    assert bios_row["baseline_version"] == "2.19.1"
    assert bios_row["component"] == "BIOS"

    only = await client.get(
        f"/api/firmware_baseline/{baseline['id']}/compliance/?status=non_compliant&page_size=2",
        headers=admin_headers,
    )
    assert only.json()["count"] == 3
    assert len(only.json()["results"]) == 2 and only.json()["next"]
    assert only.json()["summary"]["servers"] == 5

    mine = await client.get(f"/api/server/{behind.id}/firmware_compliance/", headers=admin_headers)
    assert mine.status_code == 200
    assert mine.json()["status"] == "non_compliant"
    assert [b["baseline"] for b in mine.json()["baselines"]] == [baseline["id"]]

    # The events: one per server, its first status.
    for server, status in ((current, "compliant"), (behind, "non_compliant"), (fresh, "unknown")):
        (event,) = await compliance_events(runtime, server)
        assert (event["baseline"], event["firmware_compliance"]) == (baseline["id"], status)
        assert event["previous_firmware_compliance"] is None
        assert event["resource_pool"] == pool

    # The update is applied: the next collection recomputes and announces the change.
    assert "firmwares" in await collect(runtime, behind, dell_entries("2.19.1"))
    _, second = await compliance_events(runtime, behind)
    assert (second["firmware_compliance"], second["previous_firmware_compliance"]) == (
        "compliant",
        "non_compliant",
    )
    report = await client.get(
        f"/api/firmware_baseline/{baseline['id']}/compliance/", headers=admin_headers
    )
    assert report.json()["summary"]["compliant"] == 2
    # A collection that changes nothing announces nothing.
    assert await collect(runtime, behind, dell_entries("2.19.1")) == []
    assert len(await compliance_events(runtime, behind)) == 2

    # A binary's version changing (the catalog entry was wrong) recomputes its baselines.
    patched = await client.patch(
        f"/api/firmware/{bios}/", json={"version": "2.20.0"}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    _, now = await compliance_events(runtime, ahead)
    assert (now["firmware_compliance"], now["previous_firmware_compliance"]) == (
        "compliant",
        "non_compliant",
    )
    assert (await compliance_events(runtime, current))[-1]["firmware_compliance"] == (
        "non_compliant"
    )

    # Narrowing the baseline takes servers out of it; the binaries it names cannot be deleted.
    narrowed = await client.patch(
        f"/api/firmware_baseline/{baseline['id']}/",
        json={"models": ["PowerEdge R750"]},
        headers=admin_headers,
    )
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["firmware"] == [bios, nic, idrac, other]
    report = await client.get(
        f"/api/firmware_baseline/{baseline['id']}/compliance/", headers=admin_headers
    )
    assert report.json()["count"] == 0
    refused = await client.delete(f"/api/firmware/{bios}/", headers=admin_headers)
    assert refused.status_code == 409
    assert refused.json()["baselines"] == [baseline["id"]]
    gone = await client.delete(f"/api/firmware_baseline/{baseline['id']}/", headers=admin_headers)
    assert gone.status_code == 204
    assert (await client.delete(f"/api/firmware/{bios}/", headers=admin_headers)).status_code == 204


async def test_baseline_list_conventions_and_validation(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    bios = await add_binary(
        client, admin_headers, f"B {unique}", firmware_type="BIOS", version="1.0"
    )
    ids = []
    for n in range(3):
        created = await client.post(
            "/api/firmware_baseline/",
            json={"name": f"list-{unique}-{n}", "firmware": [bios]},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    listed = await client.get(
        f"/api/firmware_baseline/?search=list-{unique}&ordering=-name&page_size=2",
        headers=admin_headers,
    )
    assert listed.json()["count"] == 3
    assert [b["id"] for b in listed.json()["results"]] == [ids[2], ids[1]]
    assert listed.json()["next"]
    exact = await client.get(f"/api/firmware_baseline/?name=list-{unique}-1", headers=admin_headers)
    assert [b["id"] for b in exact.json()["results"]] == [ids[1]]

    missing = await client.post(
        "/api/firmware_baseline/",
        json={"name": "x", "firmware": [bios, 10**9]},
        headers=admin_headers,
    )
    assert missing.status_code == 400 and "firmware" in missing.json()
    empty = await client.post(
        "/api/firmware_baseline/", json={"name": "x", "firmware": []}, headers=admin_headers
    )
    assert empty.status_code == 400
    put = await client.put(
        f"/api/firmware_baseline/{ids[0]}/",
        json={"name": f"renamed-{unique}", "firmware": [bios]},
        headers=admin_headers,
    )
    assert put.status_code == 200 and put.json()["name"] == f"renamed-{unique}"
    assert (
        await client.get("/api/firmware_baseline/999999999/", headers=admin_headers)
    ).status_code == 404


async def test_members_see_their_pools_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    member = await group_with_member(client, admin_headers, f"fwm{unique}")
    other = await group_with_member(client, admin_headers, f"fwo{unique}")
    (mine,) = await make_servers(runtime, f"fwm{unique}", 1, member.pool)
    (theirs,) = await make_servers(runtime, f"fwo{unique}", 1, other.pool)
    for server in (mine, theirs):
        await set_firmware(runtime, server, dell_entries("2.18.1"))
    bios = await add_binary(
        client,
        admin_headers,
        f"BIOS m{unique}",
        firmware_type="BIOS",
        version="2.19.1",
        software_ids=["159"],
    )
    everywhere = await client.post(
        "/api/firmware_baseline/",
        json={"name": f"all-{unique}", "firmware": [bios]},
        headers=admin_headers,
    )
    theirs_only = await client.post(
        "/api/firmware_baseline/",
        json={"name": f"theirs-{unique}", "firmware": [bios], "resource_pool": other.pool},
        headers=admin_headers,
    )
    # Members manage baselines of their pools, never one for every pool or another's pool.
    refused = await client.post(
        "/api/firmware_baseline/",
        json={"name": f"m-all-{unique}", "firmware": [bios]},
        headers=member.headers,
    )
    assert refused.status_code == 403
    hidden_pool = await client.post(
        "/api/firmware_baseline/",
        json={"name": f"m-x-{unique}", "firmware": [bios], "resource_pool": other.pool},
        headers=member.headers,
    )
    assert hidden_pool.status_code == 400 and "resource_pool" in hidden_pool.json()
    own = await client.post(
        "/api/firmware_baseline/",
        json={"name": f"m-own-{unique}", "firmware": [bios], "resource_pool": member.pool},
        headers=member.headers,
    )
    assert own.status_code == 201, own.text

    listed = await client.get(f"/api/firmware_baseline/?search={unique}", headers=member.headers)
    assert {b["id"] for b in listed.json()["results"]} == {
        everywhere.json()["id"],
        own.json()["id"],
    }
    hidden = f"/api/firmware_baseline/{theirs_only.json()['id']}/"
    assert (await client.get(hidden, headers=member.headers)).status_code == 404
    assert (await client.get(hidden + "compliance/", headers=member.headers)).status_code == 404
    assert (
        await client.patch(hidden, json={"name": "x"}, headers=member.headers)
    ).status_code == 404
    shared = f"/api/firmware_baseline/{everywhere.json()['id']}/"
    assert (
        await client.patch(shared, json={"name": "x"}, headers=member.headers)
    ).status_code == 403

    # The report of a baseline for every pool lists the member's servers only.
    report = await client.get(shared + "compliance/", headers=member.headers)
    assert [r["server"] for r in report.json()["results"]] == [mine.id]
    assert (
        await client.get(f"/api/server/{theirs.id}/firmware_compliance/", headers=member.headers)
    ).status_code == 404
    own_view = await client.get(
        f"/api/server/{mine.id}/firmware_compliance/", headers=member.headers
    )
    # (Baselines for every pool made by other tests apply too.)
    seen = {b["baseline"] for b in own_view.json()["baselines"]}
    assert {everywhere.json()["id"], own.json()["id"]} <= seen
    assert theirs_only.json()["id"] not in seen

    # Leaving the pool takes the server out of the pool's baseline (and its status with it).
    unassigned = await client.post(
        "/api/server/remove_from_pool/",
        json={"servers": [mine.id]},
        headers=admin_headers,
    )
    assert unassigned.status_code == 200, unassigned.text
    admin_view = await client.get(
        f"/api/server/{mine.id}/firmware_compliance/", headers=admin_headers
    )
    seen = {b["baseline"] for b in admin_view.json()["baselines"]}
    assert everywhere.json()["id"] in seen and own.json()["id"] not in seen
