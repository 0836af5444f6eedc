"""Bulk actions are one step: one transaction and one pipelined publish for all their items,
however many, with the answers, events and errors a one-by-one start gave."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import col, delete

from shared.contracts.commands import Command
from shared.models import Node, NodeStatus, Server
from shared.platform.runtime import Runtime
from tests.discovery_helpers import create_profile, events
from tests.pool_helpers import make_servers
from tests.statement_count import count_statements

pytestmark = [pytest.mark.broker]

BULK = 300
_hosts = itertools.count(1)


class Publishes:
    """Every publish call the API's runtime makes for commands (single or pipelined)."""

    def __init__(self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[Command]] = []
        publisher = runtime.publisher
        single, many = publisher.command, publisher.commands

        async def command(c: Command) -> None:
            self.calls.append([c])
            await single(c)

        async def commands(cs: Any) -> None:
            self.calls.append(list(cs))
            await many(cs)

        monkeypatch.setattr(publisher, "command", command)
        monkeypatch.setattr(publisher, "commands", commands)


@pytest.fixture
def publishes(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Publishes]:
    yield Publishes(runtime, monkeypatch)


@pytest.fixture
async def nodes(runtime: Runtime) -> AsyncIterator[list[Node]]:
    """Discovered nodes at unroutable addresses; deleted afterwards, so a registrar that picks
    their commands up later finds nothing to do."""
    async with runtime.db.session() as session:
        made = []
        for _ in range(BULK + 2):
            n = next(_hosts)
            node = Node(ip=f"198.18.{n // 250}.{n % 250 + 1}", port=8443, url=f"https://bulk-{n}")
            session.add(node)
            made.append(node)
        await session.commit()
        for node in made:
            await session.refresh(node)
    yield made
    async with runtime.db.session() as session:
        await session.exec(delete(Node).where(col(Node.id).in_([n.id for n in made])))
        await session.commit()


async def _set_status(runtime: Runtime, node: Node, status: NodeStatus) -> None:
    async with runtime.db.session() as session:
        stored = await session.get(Node, node.id)
        assert stored is not None
        stored.status = status
        session.add(stored)
        await session.commit()


async def _register(
    client: httpx.AsyncClient, headers: dict[str, str], ids: list[int], profile: int
) -> httpx.Response:
    return await client.post(
        "/api/node/register/?wait=0",
        json={"nodes": ids, "auth_profile": profile},
        headers=headers,
    )


async def test_a_bulk_register_is_one_transaction_and_one_publish(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    nodes: list[Node],
    publishes: Publishes,
) -> None:
    profile = await create_profile(client, admin_headers, [("root", "bulk-password")])
    refused, busy, *rest = nodes
    await _set_status(runtime, refused, NodeStatus.certificate_changed)
    await _set_status(runtime, busy, NodeStatus.registering)
    few, many = rest[:5], rest[5:]

    measured = []
    for batch in (few, many):
        ids = [n.id for n in batch if n.id is not None]
        with count_statements(runtime) as counted:
            response = await _register(client, admin_headers, ids, profile)
        assert response.status_code == 202, response.text
        results = response.json()["results"]
        assert [r["id"] for r in results] == ids
        assert all(r["status"] == "registering" and r["servers"] == [] for r in results)
        measured.append((len(counted.sql), counted.write_transactions))
    # As many statements and commits for 295 nodes as for 5: nothing is done per node.
    assert measured[0] == measured[1]
    assert measured[1][1] == 1
    assert [len(call) for call in publishes.calls] == [len(few), len(many)]

    ids = [n.id for n in rest]
    registering = await events(runtime, "racksmith.evt.node.*.registering")
    assert sorted(e["data"]["id"] for e in registering if e["data"]["id"] in ids) == sorted(ids)

    # Per-node outcomes in a bulk: a changed certificate is refused, a registration in progress
    # is not started twice; neither is published.
    publishes.calls.clear()
    mixed = await _register(client, admin_headers, [refused.id or 0, busy.id or 0], profile)
    assert mixed.status_code == 202, mixed.text
    assert [r["status"] for r in mixed.json()["results"]] == ["certificate_changed", "registering"]
    assert publishes.calls == []

    unknown = await _register(client, admin_headers, [rest[0].id or 0, 987654], profile)
    assert unknown.status_code == 400 and "nodes" in unknown.json()


async def test_a_bulk_refresh_is_one_publish(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    unique: str,
    publishes: Publishes,
) -> None:
    servers = await make_servers(runtime, f"refresh-{unique}", 200)
    ids = [s.id for s in servers]
    try:
        response = await client.post(
            "/api/server/refresh/", json={"servers": ids}, headers=admin_headers
        )
        assert response.status_code == 202, response.text
        assert [s["id"] for s in response.json()["servers"]] == ids
        assert [len(call) for call in publishes.calls] == [len(ids)]
    finally:
        async with runtime.db.session() as session:
            node_ids = [s.node_id for s in servers]
            await session.exec(delete(Server).where(col(Server.id).in_(ids)))
            await session.exec(delete(Node).where(col(Node.id).in_(node_ids)))
            await session.commit()


async def test_a_bulk_run_scan_is_one_transaction_and_one_publish(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    unique: str,
    publishes: Publishes,
) -> None:
    ranges = []
    for n in range(6):
        created = await client.post(
            "/api/node_discovery/scan_range/",
            json={"name": f"{unique}-{n}", "cidr": f"203.0.113.{n * 4}/30"},
            headers=admin_headers,
        )
        ranges.append(created.json()["id"])
    with count_statements(runtime) as counted:
        started = await client.post(
            "/api/node_discovery/run_scan/", json={"scan_ranges": ranges}, headers=admin_headers
        )
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["started"] == ranges and body["already_scanning"] == []
    assert all(r["status"] == "scanning" for r in body["scan_ranges"])
    assert counted.write_transactions == 1
    assert [len(call) for call in publishes.calls] == [len(ranges)]
