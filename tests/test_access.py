"""The access matrix: for every endpoint and method, a superuser, a member of the owning group, a
member of another group and an anonymous client get the right status — and no list, count,
search or sub-resource leaks another group's objects. Jobs follow their servers: no jobs worker
runs here, so a job stays pending (and its server locked) once started."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.platform.runtime import Runtime
from tests.pool_helpers import group_with_member, make_servers, make_switch

ROLES = ("superuser", "owner", "other", "anonymous")


@pytest.fixture(scope="module")
async def world(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> dict[str, Any]:
    import uuid

    tag = uuid.uuid4().hex[:6]
    ids: dict[str, Any] = {"tag": tag}
    for side in ("a", "b"):
        member = await group_with_member(client, admin_headers, f"{side}-{tag}")
        # A sub-pool without a group of its own: visible through its parent.
        sub = (
            await client.post(
                f"/api/pool/{member.pool}/create_sub_pool/",
                json={"name": f"{side}-sub-{tag}"},
                headers=admin_headers,
            )
        ).json()
        (server,) = await make_servers(runtime, f"{side}srv{tag}", 1, pool_id=sub["id"])
        switch = await make_switch(runtime, f"{side}-switch-{tag}", pool_id=member.pool)
        ids[side] = {
            "group": member.group,
            "pool": member.pool,
            "sub": sub["id"],
            "server": server.id,
            "switch": switch.id,
            "node": server.node_id,
        }
        ids[f"{side}_headers"] = member.headers
    # Servers of the owner's sub-pool to start jobs on: one per role and endpoint, since a
    # started job holds its server (a second start would be a 409 whoever asked).
    starts = ("power", "boot", "bulk")
    spare = await make_servers(runtime, f"ajob{tag}", len(starts) * len(ROLES) + 1, ids["a"]["sub"])
    for i, (what, role) in enumerate((w, r) for w in starts for r in ROLES):
        ids["a"][f"{what}_{role}"] = spare[i].id
    ids["a"]["job_server"] = spare[-1].id
    started = await client.post(
        f"/api/server/{spare[-1].id}/power/", json={"action": "on"}, headers=admin_headers
    )
    assert started.status_code == 202, started.text
    ids["a"]["job"] = started.json()["id"]
    return ids


def headers_for(world: dict[str, Any], admin_headers: dict[str, str], role: str) -> dict[str, str]:
    return {
        "superuser": admin_headers,
        "owner": world["a_headers"],
        "other": world["b_headers"],
        "anonymous": {},
    }[role]


# (method, path template, body, expected status per role: superuser, owner, other, anonymous)
Case = tuple[str, str, dict[str, Any] | None, tuple[int, int, int, int]]
A = "{a}"
CASES: list[Case] = [
    ("GET", "/api/pool/", None, (200, 200, 200, 401)),
    ("GET", "/api/pool/{pool}/", None, (200, 200, 404, 401)),
    ("GET", "/api/pool/{sub}/", None, (200, 200, 404, 401)),
    # Members of a pool's group manage it (the guide: the group "controls which users can see
    # and manage the pool"); top-level pools stay with superusers.
    ("PATCH", "/api/pool/{pool}/", {"description": "x"}, (200, 200, 404, 401)),
    ("PUT", "/api/pool/{sub}/", {"name": "renamed", "parent": "{pool}"}, (200, 200, 404, 401)),
    ("POST", "/api/pool/", {"name": "new"}, (201, 403, 403, 401)),
    # A pool under one the user sees is a sub-pool; another group's parent names nothing (400).
    ("POST", "/api/pool/", {"name": "new-sub", "parent": "{pool}"}, (201, 201, 400, 401)),
    ("POST", "/api/pool/{pool}/create_sub_pool/", {"name": "s"}, (201, 201, 404, 401)),
    ("DELETE", "/api/pool/987654/", None, (404, 404, 404, 401)),
    # The server sits in the pool's sub-pool: everyone who sees it is told where it is (409).
    ("POST", "/api/pool/{pool}/assign_servers/", {"servers": ["{server}"]}, (409, 409, 404, 401)),
    ("POST", "/api/pool/{pool}/assign_switches/", {"switches": ["{switch}"]}, (200, 200, 404, 401)),
    ("GET", "/api/server/", None, (200, 200, 200, 401)),
    ("GET", "/api/server/{server}/", None, (200, 200, 404, 401)),
    ("PATCH", "/api/server/{server}/", {"description": "rack 5"}, (200, 200, 404, 401)),
    # Sending the server's current pool is not a move: members may (moves are tested below).
    ("PATCH", "/api/server/{server}/", {"resource_pool": "{sub}"}, (200, 200, 404, 401)),
    ("PUT", "/api/server/{server}/", {"name": "n", "resource_pool": "{sub}"}, (200, 200, 404, 401)),
    ("GET", "/api/server/{server}/processors/", None, (200, 200, 404, 401)),
    ("GET", "/api/server/{server}/memory/", None, (200, 200, 404, 401)),
    ("GET", "/api/server/{server}/ethernet_interfaces/", None, (200, 200, 404, 401)),
    ("GET", "/api/server/{server}/storages/", None, (200, 200, 404, 401)),
    ("GET", "/api/server/{server}/firmwares/", None, (200, 200, 404, 401)),
    ("POST", "/api/server/{server}/refresh/", None, (202, 202, 404, 401)),
    ("POST", "/api/server/refresh/", {"servers": ["{server}"]}, (202, 202, 400, 401)),
    # The superuser goes first: after it the server is in no pool, which no member sees (400).
    ("POST", "/api/server/remove_from_pool/", {"servers": ["{server}"]}, (200, 400, 400, 401)),
    ("GET", "/api/switch/", None, (200, 200, 200, 401)),
    ("GET", "/api/switch/{switch}/", None, (200, 200, 404, 401)),
    ("PATCH", "/api/switch/{switch}/", {"resource_pool": "{pool}"}, (200, 200, 404, 401)),
    ("POST", "/api/switch/", {"name": "sw"}, (201, 403, 403, 401)),
    ("GET", "/api/users/me/", None, (200, 200, 200, 401)),
    ("GET", "/api/users/", None, (200, 403, 403, 401)),
    ("GET", "/api/groups/", None, (200, 403, 403, 401)),
    ("GET", "/api/node/", None, (200, 403, 403, 401)),
    ("GET", "/api/node/{node}/", None, (200, 403, 403, 401)),
    ("GET", "/api/node_discovery/scan_range/", None, (200, 403, 403, 401)),
    ("POST", "/api/node_discovery/run_scan/", {"scan_ranges": [987654]}, (400, 403, 403, 401)),
    ("GET", "/api/node_discovery/auth_profile/", None, (200, 403, 403, 401)),
    # Jobs: a member sees, starts, cancels and retries the jobs of the servers it sees.
    ("GET", "/api/job/", None, (200, 200, 200, 401)),
    ("GET", "/api/job/{job}/", None, (200, 200, 404, 401)),
    ("POST", "/api/server/{power_mine}/power/", {"action": "on"}, (202, 202, 404, 401)),
    ("POST", "/api/server/{boot_mine}/boot/", {"target": "pxe"}, (202, 202, 404, 401)),
    (
        "POST",
        "/api/server/power/",
        {"servers": ["{bulk_mine}"], "action": "off"},
        (202, 202, 400, 401),
    ),
    # The superuser goes first: it cancels the pending job at once, and retries it; after it
    # the owner gets past access to the job's state (409), another group not even that far.
    ("POST", "/api/job/{job}/cancel/", None, (200, 409, 404, 401)),
    ("POST", "/api/job/{job}/retry/", None, (202, 409, 404, 401)),
]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


async def test_lists_counts_and_search_show_only_what_a_user_may_see(
    client: httpx.AsyncClient, admin_headers: dict[str, str], world: dict[str, Any]
) -> None:
    tag, a, b = world["tag"], world["a"], world["b"]

    async def visible(headers: dict[str, str], url: str) -> set[int]:
        body = (await client.get(url, headers=headers)).json()
        assert body["count"] == len(body["results"])
        return {r["id"] for r in body["results"]}

    owner = world["a_headers"]
    pools = await visible(owner, "/api/pool/")
    assert {a["pool"], a["sub"]} <= pools and not pools & {b["pool"], b["sub"]}
    assert await visible(owner, f"/api/server/?search=srv{tag}") == {a["server"]}
    assert await visible(owner, f"/api/server/?search=bsrv{tag}") == set()
    # Another group's pool is no choice at all, as if it did not exist (django-filter's 400).
    hidden = await client.get(f"/api/server/?resource_pool={b['sub']}", headers=owner)
    assert hidden.status_code == 400 and list(hidden.json()) == ["resource_pool"]
    # So is another group (pools by group) and a node of a server the member does not see.
    assert a["pool"] in await visible(owner, f"/api/pool/?group={a['group']}")
    assert await visible(owner, f"/api/server/?node={a['node']}") == {a["server"]}
    for url in (f"/api/pool/?group={b['group']}", f"/api/server/?node={b['node']}"):
        hidden = await client.get(url, headers=owner)
        assert hidden.status_code == 400, url
        missing = await client.get(url.rsplit("=", 1)[0] + "=2147483647", headers=owner)
        assert (missing.status_code, missing.json()) == (400, hidden.json()), url
    # A member is shown a generic text for a BMC failure: the real one is no filter.
    params = {p["name"] for p in await _list_parameters(client, "/api/server/")}
    assert "inventory_error_code" in params and "inventory_error" not in params
    assert await visible(owner, f"/api/switch/?search={tag}") == {a["switch"]}
    assert await visible(owner, "/api/server/?page_size=1000") == await visible(
        owner, "/api/server/"
    )
    pool = (await client.get(f"/api/pool/{a['pool']}/", headers=owner)).json()
    assert pool["sub_pools"] == [a["sub"]] and pool["switches_count"] == 1
    assert await visible(admin_headers, f"/api/server/?search=srv{tag}") == {
        a["server"],
        b["server"],
    }


async def _list_parameters(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    schema = (await client.get("/api/schema/?format=json")).json()
    parameters: list[dict[str, Any]] = schema["paths"][path]["get"]["parameters"]
    return parameters


# Runs after the list test above: its superuser cases move and rename the fixtures' objects.
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), CASES, ids=[f"{c[0]} {c[1]} {c[2]}" for c in CASES]
)
async def test_access_matrix(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    world: dict[str, Any],
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: tuple[int, int, int, int],
) -> None:
    # "{power_mine}" and the like: this role's own server for the endpoint.
    ids = world["a"] | {f"{w}_mine": world["a"][f"{w}_{role}"] for w in ("power", "boot", "bulk")}
    response = await client.request(
        method,
        _fill(path, ids),
        json=_fill(body, ids),
        headers=headers_for(world, admin_headers, role),
    )
    assert response.status_code == expected[ROLES.index(role)], response.text


async def test_members_manage_their_pools(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    world: dict[str, Any],
) -> None:
    a, b, tag = world["a"], world["b"], world["tag"]
    owner = world["a_headers"]
    (spare, loose) = await make_servers(runtime, f"mgr{tag}", 2, pool_id=a["sub"])
    rack = (
        await client.post(
            f"/api/pool/{a['pool']}/create_sub_pool/", json={"name": f"rack-{tag}"}, headers=owner
        )
    ).json()
    assert rack["parent"] == a["pool"] and rack["group"] == a["group"]
    # The guide's "Update a Pool" body: the sub-pool stays where it is.
    updated = await client.put(
        f"/api/pool/{rack['id']}/",
        json={"name": "Updated Pool Name", "description": "New description", "group": a["group"]},
        headers=owner,
    )
    assert updated.status_code == 200 and updated.json()["parent"] == a["pool"]
    # Servers move between the member's pools: out of one, into another.
    moved = await client.patch(
        f"/api/server/{spare.id}/", json={"resource_pool": rack["id"]}, headers=owner
    )
    assert moved.status_code == 200 and moved.json()["resource_pool"] == rack["id"]
    out = await client.post(
        "/api/server/remove_from_pool/", json={"servers": [loose.id]}, headers=owner
    )
    assert out.status_code == 200
    # Now in no pool: only a superuser sees it, and only a superuser puts it into a pool.
    back = await client.post(
        f"/api/pool/{rack['id']}/assign_servers/", json={"servers": [loose.id]}, headers=owner
    )
    assert back.status_code == 400 and list(back.json()) == ["servers"]
    back = await client.post(
        f"/api/pool/{rack['id']}/assign_servers/",
        json={"servers": [loose.id]},
        headers=admin_headers,
    )
    assert back.status_code == 200
    # Into another group's pool: it names nothing the member sees.
    away = await client.patch(
        f"/api/server/{spare.id}/", json={"resource_pool": b["pool"]}, headers=owner
    )
    assert away.status_code == 400 and list(away.json()) == ["resource_pool"]
    # Not theirs to give away, make top-level, delete, or edit a switch's own fields.
    given = await client.patch(
        f"/api/pool/{rack['id']}/", json={"group": b["group"]}, headers=owner
    )
    assert given.status_code == 403
    orphaned = await client.patch(
        f"/api/pool/{rack['id']}/", json={"parent": None, "group": None}, headers=owner
    )
    assert orphaned.status_code == 403
    assert (await client.delete(f"/api/pool/{rack['id']}/", headers=owner)).status_code == 403
    renamed = await client.patch(
        f"/api/switch/{a['switch']}/", json={"model": f"other-{tag}"}, headers=owner
    )
    assert renamed.status_code == 403
    # The other group sees none of it.
    other = world["b_headers"]
    assert (await client.get(f"/api/pool/{rack['id']}/", headers=other)).status_code == 404
