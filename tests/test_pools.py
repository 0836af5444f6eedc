"""/api/pool/ (guide: "Resource Pool Management"), assignment, switches."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlmodel import col, update

from shared.models import Node, Server
from shared.platform.runtime import Runtime
from tests.discovery_helpers import events
from tests.pool_helpers import make_servers, make_switch
from tests.test_servers_api import count_statements

POOLS = "/api/pool/"


async def _pool(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(POOLS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


_octets = iter(range(256))


def unique_octet() -> int:
    return next(_octets)


async def _is_server_id(runtime: Runtime, number: int | None) -> bool:
    async with runtime.db.session() as session:
        return await session.get(Server, number) is not None


async def test_default_group_and_pool_exist(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    groups = (await client.get("/api/groups/?name=default", headers=admin_headers)).json()
    pools = (await client.get(f"{POOLS}?name=default", headers=admin_headers)).json()
    assert groups["count"] == 1 and pools["count"] == 1
    assert pools["results"][0]["group"] == groups["results"][0]["id"]


async def test_pool_lifecycle_like_the_guide(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    group = (
        await client.post("/api/groups/", json={"name": f"g-{unique}"}, headers=admin_headers)
    ).json()
    pool = await _pool(
        client, admin_headers, name=f"Production {unique}", description="prod", group=group["id"]
    )
    assert pool["servers_count"] == 0 and pool["sub_pools"] == [] and pool["parent"] is None
    sub = await client.post(
        f"{POOLS}{pool['id']}/create_sub_pool/",
        json={"name": "Linux Servers", "description": "Linux production servers"},
        headers=admin_headers,
    )
    assert sub.status_code == 201
    assert sub.json()["parent"] == pool["id"] and sub.json()["group"] == group["id"]

    servers = await make_servers(runtime, f"life{unique}", 3)
    # Named by its node (BMC) id — one that is no server's id, since a server id wins: node
    # ids grow faster than server ids while nodes without servers are added.
    while await _is_server_id(runtime, servers[2].node_id):
        async with runtime.db.session() as session:
            session.add(Node(ip=f"198.18.{unique_octet()}.1", port=443, url=f"https://{unique}"))
            await session.commit()
        servers[2:] = await make_servers(runtime, f"life{unique}x{servers[2].id}", 1)
    by_node = servers[2].node_id
    assigned = await client.post(
        f"{POOLS}{pool['id']}/assign_servers/",
        json={"servers": [servers[0].id, servers[1].id, by_node]},
        headers=admin_headers,
    )
    assert assigned.status_code == 200, assigned.text
    detail = assigned.json()
    assert detail["servers_count"] == 3
    assert {s["id"] for s in detail["servers"]} == {s.id for s in servers}
    listed = (
        await client.get(f"/api/server/?resource_pool={pool['id']}", headers=admin_headers)
    ).json()
    assert listed["count"] == 3

    put = await client.put(
        f"{POOLS}{pool['id']}/",
        json={"name": "Updated Pool Name", "description": "New description", "group": group["id"]},
        headers=admin_headers,
    )
    assert put.status_code == 200 and put.json()["name"] == "Updated Pool Name"
    assert put.json()["sub_pools"] == [sub.json()["id"]]

    history = [e["type"] for e in await events(runtime, f"racksmith.evt.pool.{pool['id']}.*")]
    assert history == ["io.racksmith.pool.created", "io.racksmith.pool.updated"]
    assigned_events = await events(runtime, f"racksmith.evt.server.{servers[0].id}.assigned")
    assert assigned_events[-1]["data"]["resource_pool"] == pool["id"]


async def test_assigning_a_server_held_elsewhere_is_refused_whole(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    first = await _pool(client, admin_headers, name=f"a-{unique}")
    second = await _pool(client, admin_headers, name=f"b-{unique}")
    held, free = await make_servers(runtime, f"held{unique}", 2)
    await client.post(
        f"{POOLS}{first['id']}/assign_servers/", json={"servers": [held.id]}, headers=admin_headers
    )
    refused = await client.post(
        f"{POOLS}{second['id']}/assign_servers/",
        json={"servers": [free.id, held.id]},
        headers=admin_headers,
    )
    assert refused.status_code == 409
    body = refused.json()
    assert body["conflicts"] == [
        {"server": held.id, "resource_pool": first["id"], "resource_pool_name": f"a-{unique}"}
    ]
    assert "detail" in body
    free_now = (await client.get(f"/api/server/{free.id}/", headers=admin_headers)).json()
    assert free_now["resource_pool"] is None  # all or nothing
    again = await client.post(
        f"{POOLS}{first['id']}/assign_servers/", json={"servers": [held.id]}, headers=admin_headers
    )
    assert again.status_code == 200  # already there: not a conflict


async def test_concurrent_assignment_has_exactly_one_winner(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    pools = [await _pool(client, admin_headers, name=f"race-{i}-{unique}") for i in range(2)]
    (server,) = await make_servers(runtime, f"race{unique}", 1)
    responses = await asyncio.gather(
        *(
            client.post(
                f"{POOLS}{p['id']}/assign_servers/",
                json={"servers": [server.id]},
                headers=admin_headers,
            )
            for p in pools
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    winner = next(p for p, r in zip(pools, responses, strict=True) if r.status_code == 200)
    current = (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()
    assert current["resource_pool"] == winner["id"]


async def test_remove_from_pool_respects_locks(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    pool = await _pool(client, admin_headers, name=f"rm-{unique}")
    servers = await make_servers(runtime, f"rm{unique}", 2, pool_id=pool["id"])
    async with runtime.db.session() as session:
        await session.exec(
            update(Server)
            .where(col(Server.id) == servers[0].id)
            .values(locked_by="firmware update 7")
        )
        await session.commit()
    refused = await client.post(
        "/api/server/remove_from_pool/",
        json={"servers": [s.id for s in servers]},
        headers=admin_headers,
    )
    assert refused.status_code == 409
    assert refused.json()["conflicts"] == [
        {"server": servers[0].id, "locked_by": "firmware update 7"}
    ]
    removed = await client.post(
        "/api/server/remove_from_pool/", json={"servers": [servers[1].id]}, headers=admin_headers
    )
    assert removed.status_code == 200
    assert removed.json()["servers"][0]["resource_pool"] is None
    patch_locked = await client.patch(
        f"/api/server/{servers[0].id}/", json={"resource_pool": None}, headers=admin_headers
    )
    assert patch_locked.status_code == 409


async def test_delete_is_blocked_until_empty_or_forced(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    pool = await _pool(client, admin_headers, name=f"del-{unique}")
    (server,) = await make_servers(runtime, f"del{unique}", 1, pool_id=pool["id"])
    switch = await make_switch(runtime, f"sw-{unique}", pool_id=pool["id"])
    sub = await _pool(client, admin_headers, name=f"del-sub-{unique}", parent=pool["id"])
    blocked = await client.delete(f"{POOLS}{pool['id']}/", headers=admin_headers)
    assert blocked.status_code == 409
    assert blocked.json()["sub_pools"] == [sub["id"]] and blocked.json()["servers"] == [server.id]
    assert blocked.json()["switches"] == [switch.id]
    assert (await client.delete(f"{POOLS}{sub['id']}/", headers=admin_headers)).status_code == 204
    assert (
        await client.delete(f"{POOLS}{pool['id']}/?force=true", headers=admin_headers)
    ).status_code == 204
    assert (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()[
        "resource_pool"
    ] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"servers": []}, "servers"),
        ({"servers": ["x"]}, "servers"),
        ({"servers": [987654321]}, "servers"),
        ({}, "servers"),
    ],
)
async def test_assignment_input_errors(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    unique: str,
    body: dict[str, Any],
    field: str,
) -> None:
    pool = await _pool(client, admin_headers, name=f"bad-{unique}")
    response = await client.post(
        f"{POOLS}{pool['id']}/assign_servers/", json=body, headers=admin_headers
    )
    assert response.status_code == 400 and field in response.json()


async def test_pool_input_errors_and_cycles(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    top = await _pool(client, admin_headers, name=f"top-{unique}")
    mid = await _pool(client, admin_headers, name=f"mid-{unique}", parent=top["id"])
    low = await _pool(client, admin_headers, name=f"low-{unique}", parent=mid["id"])
    for parent in (low["id"], top["id"]):
        cycle = await client.patch(
            f"{POOLS}{top['id']}/", json={"parent": parent}, headers=admin_headers
        )
        assert cycle.status_code == 400 and "parent" in cycle.json()
    for body, field in (
        ({"name": "x", "group": 987654}, "group"),
        ({"name": "x", "parent": 987654}, "parent"),
        ({"name": ""}, "name"),
        ({"name": "x", "group": "one"}, "group"),
    ):
        response = await client.post(POOLS, json=body, headers=admin_headers)
        assert response.status_code == 400 and field in response.json(), body


async def test_switches(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    pool = await _pool(client, admin_headers, name=f"net-{unique}")
    created = await client.post(
        "/api/switch/",
        json={
            "name": f"leaf-{unique}",
            "model": "SN2700",
            "manufacturer": "NVIDIA",
            "mgmt_address": "192.0.2.10",
        },
        headers=admin_headers,
    )
    assert created.status_code == 201
    switch = created.json()
    assigned = await client.post(
        f"{POOLS}{pool['id']}/assign_switches/",
        json={"switches": [switch["id"]]},
        headers=admin_headers,
    )
    assert assigned.status_code == 200 and assigned.json()["switches_count"] == 1
    found = (
        await client.get(
            f"/api/switch/?search=leaf-{unique}&ordering=resource_pool__name", headers=admin_headers
        )
    ).json()
    assert found["count"] == 1 and found["results"][0]["resource_pool"] == pool["id"]
    patched = await client.patch(
        f"/api/switch/{switch['id']}/", json={"model": "SN3700"}, headers=admin_headers
    )
    assert patched.json()["model"] == "SN3700"
    assert (
        await client.delete(f"/api/switch/{switch['id']}/", headers=admin_headers)
    ).status_code == 204


async def test_explicit_nulls_on_required_fields_are_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    pool = await _pool(client, admin_headers, name=f"nulls-{unique}")
    (server,) = await make_servers(runtime, f"nulls{unique}", 1)
    switch = await make_switch(runtime, f"nulls-sw-{unique}")
    profile = (
        await client.post(
            "/api/node_discovery/auth_profile/",
            json={"node_classification": "x"},
            headers=admin_headers,
        )
    ).json()
    for url, body, field in [
        (f"{POOLS}{pool['id']}/", {"name": None}, "name"),
        (f"/api/server/{server.id}/", {"description": None}, "description"),
        (f"/api/switch/{switch.id}/", {"name": None}, "name"),
        (f"/api/node_discovery/auth_profile/{profile['id']}/", {"verify_tls": None}, "verify_tls"),
        (
            f"/api/node_discovery/auth_profile/{profile['id']}/",
            {"ca_bundle": "garbage"},
            "ca_bundle",
        ),
        ("/api/users/1/", {"email": None}, "email"),
    ]:
        response = await client.patch(url, json=body, headers=admin_headers)
        assert response.status_code == 400, (url, response.text)
        assert list(response.json()) == [field]


async def test_a_pool_patch_reads_a_fixed_number_of_statements(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    """Pool, update, sub-pools, servers, switches — whatever the pool holds (the counts are
    the members listed, the caller's standing is cached; outbox statements not counted)."""
    pool = await _pool(client, admin_headers, name=f"fixed-{unique}")
    url = f"{POOLS}{pool['id']}/"
    counts = []
    for members in (0, 5):
        await make_servers(runtime, f"fx{members}{unique}", members, pool_id=pool["id"])
        with count_statements(runtime) as statements:
            patched = await client.patch(url, json={"description": unique}, headers=admin_headers)
        assert patched.status_code == 200
        assert patched.json()["servers_count"] == len(patched.json()["servers"]) == members
        counts.append(len(statements.sql))
    assert counts[0] == counts[1] <= 5
