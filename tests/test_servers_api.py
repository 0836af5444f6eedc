"""/api/server/: search, filters, ordering, pagination, writable fields, sub-resources — and a
fixed number of SQL statements per request, whatever the page size (no N+1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from shared.models import Node, Pool, Processor, Server
from shared.platform.runtime import Runtime
from tests.statement_count import count_statements


@pytest.fixture(scope="module")
async def fleet(runtime: Runtime, unique_module: str) -> AsyncIterator[dict[str, Any]]:
    """Servers as registration and inventory would leave them, written directly."""
    async with runtime.db.session() as session:
        pools = [Pool(name=f"{unique_module}-{name}") for name in ("zeta", "alpha")]
        session.add_all(pools)
        node = Node(
            ip=f"198.18.{int(unique_module, 16) % 250}.1", port=443, url=f"https://{unique_module}"
        )
        session.add(node)
        await session.flush()
        servers = []
        for i in range(12):
            server = Server(
                node_id=node.id,
                system_path=f"/redfish/v1/Systems/{unique_module}-{i}",
                name=f"{unique_module}-srv-{i:02d}",
                model="PowerEdge R650" if i % 2 else "ProLiant DL360 Gen10 Plus",
                manufacturer="Dell Inc." if i % 2 else "HPE",
                serial_number=f"SN{unique_module}{i:03d}",
                power_state="On" if i % 3 else "Off",
                health="OK",
                bmc_url=f"https://{unique_module}",
                resource_pool_id=pools[i % 2].id if i < 8 else None,
            )
            servers.append(server)
        session.add_all(servers)
        await session.flush()
        session.add_all(
            Processor(
                server_id=servers[0].id or 0, odata_id=f"/p/{n}", socket=f"CPU {n}", total_cores=16
            )
            for n in range(2)
        )
        await session.commit()
        yield {"pools": pools, "servers": servers, "tag": unique_module}


@pytest.fixture(scope="module")
def unique_module() -> str:
    import uuid

    return uuid.uuid4().hex[:6]


async def _list(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> dict[str, Any]:
    response = await client.get(f"/api/server/?{query}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_search_filter_and_order_like_the_guide(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fleet: dict[str, Any]
) -> None:
    tag = fleet["tag"]
    dell = await _list(client, admin_headers, f"search={tag}+PowerEdge")
    assert dell["count"] == 6
    pool = fleet["pools"][1]
    on_in_pool = await _list(
        client, admin_headers, f"search={tag}&resource_pool={pool.id}&power_state=On&ordering=name"
    )
    names = [s["name"] for s in on_in_pool["results"]]
    assert names == sorted(names) and names
    assert all(
        s["resource_pool"] == pool.id and s["power_state"] == "On" for s in on_in_pool["results"]
    )
    by_pool = await _list(client, admin_headers, f"search={tag}&ordering=resource_pool__name,name")
    pools = [s["resource_pool"] for s in by_pool["results"]]
    alpha, zeta = fleet["pools"][1].id, fleet["pools"][0].id
    # NULLs sort first on SQLite and last on PostgreSQL; the named pools keep their order.
    assert [p for p in pools if p is not None] == [alpha] * 4 + [zeta] * 4
    descending = await _list(client, admin_headers, f"search={tag}&ordering=-manufacturer")
    assert descending["results"][0]["manufacturer"] == "HPE"
    serial = await _list(client, admin_headers, f"search=sn{tag}011")
    assert [s["name"] for s in serial["results"]] == [f"{tag}-srv-11"]


async def test_walkthrough_query_and_pagination(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fleet: dict[str, Any]
) -> None:
    page = await _list(client, admin_headers, f"search={fleet['tag']}&ordering=-id&page_size=5")
    assert page["count"] == 12 and len(page["results"]) == 5
    ids = [s["id"] for s in page["results"]]
    assert ids == sorted(ids, reverse=True)
    assert page["next"] and page["previous"] is None


@pytest.mark.parametrize(
    "query", ["resource_pool=x", "resource_pool=987654", "inventory_status=maybe", "node__in=1,x"]
)
async def test_bad_filters_are_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/api/server/?{query}", headers=admin_headers)
    assert response.status_code == 400
    assert list(response.json()) == [query.partition("=")[0]]


async def test_only_people_fields_are_writable(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fleet: dict[str, Any]
) -> None:
    server = fleet["servers"][9]
    url = f"/api/server/{server.id}/"
    patched = await client.patch(
        url,
        json={
            "name": "renamed",
            "resource_pool": fleet["pools"][0].id,
            "model": "Forged",
            "location": "R5 U12",
        },
        headers=admin_headers,
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["name"] == "renamed" and body["location"] == "R5 U12"
    assert body["resource_pool"] == fleet["pools"][0].id
    assert body["model"] == server.model  # a hardware fact: read-only
    # PUT keeps what it was not sent (DRF serializers); sent values replace.
    replaced = await client.put(url, json={"name": "again"}, headers=admin_headers)
    assert replaced.json()["resource_pool"] == fleet["pools"][0].id
    assert replaced.json()["location"] == "R5 U12" and replaced.json()["name"] == "again"
    replaced = await client.put(
        url, json={"resource_pool": None, "location": ""}, headers=admin_headers
    )
    assert replaced.json()["resource_pool"] is None and replaced.json()["location"] == ""
    bad = await client.patch(url, json={"resource_pool": 987654}, headers=admin_headers)
    assert bad.status_code == 400 and "resource_pool" in bad.json()
    assert (await client.get("/api/server/987654/", headers=admin_headers)).status_code == 404


async def test_sub_resources(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fleet: dict[str, Any]
) -> None:
    server = fleet["servers"][0]
    processors = (
        await client.get(f"/api/server/{server.id}/processors/", headers=admin_headers)
    ).json()
    assert processors["count"] == 2 and processors["results"][0]["total_cores"] == 16
    for family in ("memory", "ethernet_interfaces", "storages", "firmwares"):
        response = await client.get(f"/api/server/{server.id}/{family}/", headers=admin_headers)
        assert response.status_code == 200 and response.json()["count"] == 0
    assert (
        await client.get("/api/server/987654/processors/", headers=admin_headers)
    ).status_code == 404


async def test_statement_count_does_not_grow_with_the_page(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fleet: dict[str, Any],
    runtime: Runtime,
) -> None:
    counts = []
    for size in (1, 12):
        query = f"search={fleet['tag']}&ordering=resource_pool__name&page_size={size}"
        with count_statements(runtime) as counted:
            await _list(client, admin_headers, query)
        counts.append(len(counted.sql))
    assert counts[0] == counts[1]
    assert counts[0] <= 3  # count, page (+ nothing per row; the caller's standing is cached)


@contextmanager
def recorded_queries(runtime: Runtime) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) that reach the driver."""
    queries: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "outbox_event" not in statement:
            queries.append((statement, parameters))

    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield queries
    finally:
        event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", record)


async def _plan(runtime: Runtime, statement: str, parameters: Any) -> str:
    """PostgreSQL's plan for a recorded statement, with sequential scans priced out (a test
    table is small enough that the planner would rather scan it)."""
    async with runtime.db.engine.connect() as conn:
        await conn.exec_driver_sql("SET enable_seqscan = off")
        rows = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(row[0] for row in rows)


async def test_search_is_served_by_the_index_and_follows_changes(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    fleet: dict[str, Any],
    runtime: Runtime,
) -> None:
    tag, server = fleet["tag"], fleet["servers"][3]
    found = await _list(client, admin_headers, f"search={tag}-srv-03&page_size=5")
    assert [s["id"] for s in found["results"]] == [server.id]
    # A full page, so that the count is asked of the database too.
    with recorded_queries(runtime) as queries:
        assert (await _list(client, admin_headers, f"search={tag}&page_size=2"))["count"] == 12
    searched = [(sql, params) for sql, params in queries if "LIKE" in sql.upper() or "MATCH" in sql]
    assert searched
    if runtime.db.engine.dialect.name == "sqlite":
        assert all("server_search MATCH" in sql for sql, _ in searched)
    else:
        # The count goes through the index; the page may walk the primary key in order instead.
        plans = [await _plan(runtime, *query) for query in searched]
        assert any("ix_server_search_trgm" in plan for plan in plans)
        assert not any("Seq Scan" in plan for plan in plans)

    url = f"/api/server/{server.id}/"
    name = server.name
    renamed = await client.patch(url, json={"name": f"renamed-{tag}"}, headers=admin_headers)
    assert renamed.status_code == 200
    try:
        assert (await _list(client, admin_headers, f"search=RENAMED-{tag}"))["count"] == 1
        assert (await _list(client, admin_headers, f"search={tag}-srv-03"))["count"] == 0
    finally:
        await client.patch(url, json={"name": name}, headers=admin_headers)
    # Terms shorter than a trigram, LIKE's wildcards and FTS5's quotes are matched literally.
    assert (await _list(client, admin_headers, f"search={tag}+r6"))["count"] == 6
    assert (await _list(client, admin_headers, f"search={tag}+%25"))["count"] == 0
    assert (await _list(client, admin_headers, f"search={tag}+_"))["count"] == 0
    assert (await _list(client, admin_headers, f"search={tag}%22+R650"))["count"] == 0
    assert (await _list(client, admin_headers, f"search=%22{tag}"))["count"] == 0


async def test_listed_servers_are_the_objects_as_retrieved(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fleet: dict[str, Any]
) -> None:
    """The list's rows (selected as columns, serialised in one pass) and its unpaginated form
    (streamed) are field for field, in the same order, what a single GET answers."""
    query = f"search={fleet['tag']}"
    paged = (await _list(client, admin_headers, f"{query}&page_size=5"))["results"]
    full = await _list(client, admin_headers, query)
    assert full["count"] == len(full["results"]) == 12
    assert full["next"] is None and full["previous"] is None
    assert full["results"][:5] == paged
    for listed in full["results"]:
        response = await client.get(f"/api/server/{listed['id']}/", headers=admin_headers)
        retrieved = response.json()
        assert list(listed) == list(retrieved)
        assert listed == retrieved


async def test_refresh_is_accepted(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fleet: dict[str, Any]
) -> None:
    server = fleet["servers"][1]
    single = await client.post(f"/api/server/{server.id}/refresh/", headers=admin_headers)
    assert single.status_code == 202 and single.json()["id"] == server.id
    bulk = await client.post(
        "/api/server/refresh/", json={"servers": [server.id, 987654]}, headers=admin_headers
    )
    assert bulk.status_code == 400 and "servers" in bulk.json()
