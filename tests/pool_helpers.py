"""Fixtures' building blocks for pool and access tests: servers and switches written directly."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import httpx

from shared.models import Node, Server, Switch
from shared.platform.runtime import Runtime
from tests.conftest import bearer, obtain_tokens

_addresses = itertools.count(1)


async def make_servers(
    runtime: Runtime, tag: str, count: int, pool_id: int | None = None
) -> list[Server]:
    """``count`` registered-looking servers, one node (BMC) each."""
    async with runtime.db.session() as session:
        servers = []
        for i in range(count):
            n = next(_addresses)
            node = Node(ip=f"198.19.{n // 250}.{n % 250 + 1}", port=443, url=f"https://{tag}-{i}")
            session.add(node)
            await session.flush()
            server = Server(
                node_id=node.id,
                system_path="/redfish/v1/Systems/1",
                name=f"{tag}-{i}",
                model="PowerEdge R650",
                manufacturer="Dell Inc.",
                serial_number=f"{tag.upper()}{i:04d}",
                power_state="On",
                resource_pool_id=pool_id,
            )
            session.add(server)
            servers.append(server)
        await session.commit()
        return servers


async def make_switch(runtime: Runtime, name: str, pool_id: int | None = None) -> Switch:
    async with runtime.db.session() as session:
        switch = Switch(name=name, model="SN2700", manufacturer="NVIDIA", resource_pool_id=pool_id)
        session.add(switch)
        await session.commit()
        return switch


@dataclass(frozen=True)
class Member:
    """A group, a user in it, and a pool of the group, as a member's tests need them."""

    group: int
    pool: int
    username: str
    headers: dict[str, str]


async def group_with_member(
    client: httpx.AsyncClient, admin_headers: dict[str, str], name: str
) -> Member:
    group = (await client.post("/api/groups/", json={"name": name}, headers=admin_headers)).json()
    username = f"{name}-user"
    created = await client.post(
        "/api/users/",
        json={"username": username, "password": "password-123", "groups": [group["id"]]},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    pool = await client.post(
        "/api/pool/", json={"name": f"{name}-pool", "group": group["id"]}, headers=admin_headers
    )
    assert pool.status_code == 201, pool.text
    tokens = await obtain_tokens(client, username, "password-123")
    return Member(group["id"], pool.json()["id"], username, bearer(tokens["access"]))
