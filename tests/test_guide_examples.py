"""The guide's own examples, replayed against the API, get the answers a Django REST Framework
server gives — for each behaviour scripts written for the guide rely on: pagination and ordering
(DRF's paginator and OrderingFilter), ids and bodies, the OpenAPI document, PUT, what a pool's
group may do, and filtering on field names (django-filter)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

from shared.platform.runtime import Runtime
from tests.conftest import bearer, obtain_tokens
from tests.pool_helpers import make_servers


@pytest.fixture(scope="module")
async def rack(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> dict[str, Any]:
    """Rack 5 of the guide: a group with an operator, its pool, twelve Dell servers in it."""
    import uuid

    tag = uuid.uuid4().hex[:6]
    group = (
        await client.post("/api/groups/", json={"name": f"ops-{tag}"}, headers=admin_headers)
    ).json()
    await client.post(
        "/api/users/",
        json={"username": f"op-{tag}", "password": "password-123", "groups": [group["id"]]},
        headers=admin_headers,
    )
    pool = (
        await client.post(
            "/api/pool/",
            json={"name": f"Production {tag}", "description": "prod", "group": group["id"]},
            headers=admin_headers,
        )
    ).json()
    servers = await make_servers(runtime, f"r5{tag}", 12, pool_id=pool["id"])
    async with runtime.db.session() as session:
        for i, server in enumerate(servers):
            server.power_state = "On" if i % 3 else "Off"
            server.sku = f"SKU{tag}{i % 2}"
            server.bios_version = f"2.{i % 4}.{tag}"
            session.add(server)
        await session.commit()
    operator = bearer((await obtain_tokens(client, f"op-{tag}", "password-123"))["access"])
    return {"tag": tag, "group": group, "pool": pool, "servers": servers, "operator": operator}


async def _get(client: httpx.AsyncClient, headers: dict[str, str], url: str) -> Any:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.text)
    return response.json()


async def test_pagination_and_ordering_like_drf(
    client: httpx.AsyncClient, admin_headers: dict[str, str], rack: dict[str, Any]
) -> None:
    pool = rack["pool"]["id"]
    base = f"/api/server/?resource_pool={pool}"
    # "Get the first 25 servers"
    page = await _get(client, admin_headers, f"{base}&page=1&page_size=25")
    assert set(page) == {"count", "next", "previous", "results"} and page["count"] == 12
    # page_size above the maximum is capped (PageNumberPagination.max_page_size), not refused.
    assert len((await _get(client, admin_headers, f"{base}&page_size=5000"))["results"]) == 12
    # page_size=0 or garbage: as if not given.
    for garbage in ("0", "abc"):
        body = await _get(client, admin_headers, f"{base}&page=1&page_size={garbage}")
        assert body["count"] == 12 and body["next"] is None
    last = await _get(client, admin_headers, f"{base}&page=last&page_size=5&ordering=id")
    assert [s["id"] for s in last["results"]] == [s.id for s in rack["servers"][10:]]
    beyond = await client.get(f"{base}&page=4&page_size=5", headers=admin_headers)
    assert (beyond.status_code, beyond.json()) == (404, {"detail": "Invalid page."})
    # "Sort servers by manufacturer (descending)", and an unknown field is ignored.
    assert (await client.get(f"{base}&ordering=-manufacturer", headers=admin_headers)).is_success
    ignored = await _get(client, admin_headers, f"{base}&ordering=cpu_count,-id")
    assert [s["id"] for s in ignored["results"]] == sorted(
        (s.id for s in rack["servers"]), reverse=True
    )


async def test_ids_and_bodies_like_drf(
    client: httpx.AsyncClient, admin_headers: dict[str, str], rack: dict[str, Any]
) -> None:
    for path in ("/api/server/abc/", "/api/pool/3565732929239296642331333141463040/"):
        response = await client.get(path, headers=admin_headers)
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    broken = await client.post(
        f"/api/pool/{rack['pool']['id']}/assign_servers/",
        content=b'{"servers": [1, 2, 3]',
        headers=admin_headers | {"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["detail"].startswith("JSON parse error - ")
    huge = await client.post(
        f"/api/pool/{rack['pool']['id']}/assign_servers/",
        json={"servers": [3565732929239296642331333141463040]},
        headers=admin_headers,
    )
    assert huge.status_code == 400 and list(huge.json()) == ["servers"]
    # A filter value that names nothing: django-filter's answer.
    nothing = await client.get("/api/server/?resource_pool=999999", headers=admin_headers)
    assert (nothing.status_code, nothing.json()) == (
        400,
        {
            "resource_pool": [
                "Select a valid choice. That choice is not one of the available choices."
            ]
        },
    )


async def test_the_openapi_schema_download(client: httpx.AsyncClient) -> None:
    as_yaml = yaml.safe_load((await client.get("/api/schema/")).text)
    as_json = (await client.get("/api/schema/", headers={"Accept": "application/json"})).json()
    assert as_yaml == as_json and as_json["openapi"] == "3.0.3"
    validate(as_json)


async def test_update_a_pool_keeps_what_it_was_not_sent(
    client: httpx.AsyncClient, admin_headers: dict[str, str], rack: dict[str, Any]
) -> None:
    pool = rack["pool"]
    sub = (
        await client.post(
            f"/api/pool/{pool['id']}/create_sub_pool/",
            json={"name": "Linux Servers", "description": "Linux production servers"},
            headers=admin_headers,
        )
    ).json()
    # The guide's "Update a Pool" body, sent to the sub-pool.
    updated = await client.put(
        f"/api/pool/{sub['id']}/",
        json={"name": "Updated Pool Name", "description": "New description", "group": 1},
        headers=admin_headers,
    )
    assert updated.status_code == 200
    assert (updated.json()["name"], updated.json()["parent"]) == ("Updated Pool Name", pool["id"])


async def test_a_pools_group_manages_it(client: httpx.AsyncClient, rack: dict[str, Any]) -> None:
    operator, pool, servers = rack["operator"], rack["pool"], rack["servers"]
    updated = await client.put(
        f"/api/pool/{pool['id']}/",
        json={
            "name": pool["name"],
            "description": "managed by its group",
            "group": rack["group"]["id"],
        },
        headers=operator,
    )
    assert updated.status_code == 200, updated.text
    sub = await client.post(
        f"/api/pool/{pool['id']}/create_sub_pool/",
        json={"name": "Linux Servers", "description": "Linux production servers"},
        headers=operator,
    )
    assert sub.status_code == 201, sub.text
    removed = await client.post(
        "/api/server/remove_from_pool/", json={"servers": [servers[0].id]}, headers=operator
    )
    assert removed.status_code == 200, removed.text
    moved = await client.patch(
        f"/api/server/{servers[1].id}/", json={"resource_pool": sub.json()["id"]}, headers=operator
    )
    assert moved.status_code == 200 and moved.json()["resource_pool"] == sub.json()["id"]
    # Servers in no pool are for superusers to hand out.
    unassigned = await client.post(
        f"/api/pool/{pool['id']}/assign_servers/",
        json={"servers": [servers[0].id]},
        headers=operator,
    )
    assert unassigned.status_code == 400


async def test_filtering_on_field_names(
    client: httpx.AsyncClient, admin_headers: dict[str, str], rack: dict[str, Any]
) -> None:
    tag, pool, servers = rack["tag"], rack["pool"]["id"], rack["servers"]
    every = ",".join(str(s.id) for s in servers)
    on = await _get(client, admin_headers, f"/api/server/?id__in={every}&power_state=On")
    assert on["count"] == 8
    in_pool = await _get(client, admin_headers, f"/api/server/?resource_pool={pool}&power_state=On")
    assert {s["resource_pool"] for s in in_pool["results"]} == {pool}
    combined = await _get(
        client, admin_headers, f"/api/server/?search=Dell&resource_pool={pool}&ordering=name"
    )
    assert [s["name"] for s in combined["results"]] == sorted(
        s["name"] for s in combined["results"]
    )
    named = await _get(client, admin_headers, f"/api/server/?name={servers[3].name}")
    assert [s["id"] for s in named["results"]] == [servers[3].id]
    assert (await _get(client, admin_headers, f"/api/server/?sku=SKU{tag}1"))["count"] == 6
    assert (await _get(client, admin_headers, f"/api/server/?bios_version=2.3.{tag}"))["count"] == 3
    ids = f"{servers[0].id},{servers[5].id}"
    assert (await _get(client, admin_headers, f"/api/server/?id__in={ids}"))["count"] == 2
