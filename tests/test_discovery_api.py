"""/api/node_discovery/ and /api/node/: validation, limits, access, run_scan semantics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from shared.platform.natsserver import EmbeddedNatsServer
from shared.platform.runtime import Runtime
from tests.conftest import bearer, make_settings, obtain_tokens

RANGES = "/api/node_discovery/scan_range/"


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await client.post(RANGES, json=body, headers=headers)


async def _count(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> int:
    body = (await client.get(f"{RANGES}?name={name}", headers=headers)).json()
    count: int = body["count"]
    return count


async def test_create_read_update_delete(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    created = await _create(
        client,
        admin_headers,
        name=f"Rack {unique}",
        ip_from="10.0.1.1",
        ip_to="10.0.1.50",
        ports=[443, 443, 8443],
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["ports"] == [443, 8443]
    assert body["status"] == "ready"
    assert body["addresses_total"] == 50
    assert body["addresses_scanned"] == 0 and body["nodes_found"] == 0
    url = f"{RANGES}{body['id']}/"
    assert (await client.get(url, headers=admin_headers)).json() == body

    patched = (await client.patch(url, json={"ip_to": "10.0.1.100"}, headers=admin_headers)).json()
    assert patched["ip_from"] == "10.0.1.1" and patched["addresses_total"] == 100
    replaced = await client.put(
        url, json={"name": f"Rack {unique}", "cidr": "10.0.2.0/24"}, headers=admin_headers
    )
    assert replaced.status_code == 200
    assert replaced.json()["ip_from"] == "10.0.2.1" and replaced.json()["ip_to"] == "10.0.2.254"
    assert replaced.json()["ports"] == [443, 8443]  # PUT keeps what it was not sent
    found = (await client.get(f"{RANGES}?search=rack+{unique}", headers=admin_headers)).json()
    assert found["count"] == 1
    assert (await client.delete(url, headers=admin_headers)).status_code == 204
    assert (await client.get(url, headers=admin_headers)).status_code == 404


async def test_cidr_shorthand(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    body = (await _create(client, admin_headers, name=unique, cidr="192.0.2.0/28")).json()
    assert (body["ip_from"], body["ip_to"], body["addresses_total"]) == (
        "192.0.2.1",
        "192.0.2.14",
        14,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ip_from": "10.0.0.9", "ip_to": "10.0.0.1"}, "ip_to"),
        ({"ip_from": "10.0.0.1", "ip_to": "fd00::1"}, "ip_to"),
        ({"ip_from": "10.0.0.300", "ip_to": "10.0.0.1"}, "ip_from"),
        ({"cidr": "10.0.0.0/8"}, "cidr"),
        ({"cidr": "not-a-network"}, "cidr"),
        ({"cidr": "10.0.0.0/24", "ip_from": "10.0.0.1"}, "cidr"),
        ({"ip_from": "10.0.0.1"}, "ip_to"),
        ({"ip_from": "10.0.0.1", "ip_to": "10.0.0.2", "ports": [0]}, "ports"),
        ({"ip_from": "10.0.0.1", "ip_to": "10.0.0.2", "ports": [65536]}, "ports"),
        ({"ip_from": "10.0.0.1", "ip_to": "10.0.0.2", "ports": []}, "ports"),
        ({"ip_from": "10.0.0.1", "ip_to": "10.0.0.2", "ports": ["https"]}, "ports"),
        ({"name": "", "ip_from": "10.0.0.1", "ip_to": "10.0.0.2"}, "name"),
    ],
)
async def test_bad_ranges_are_400_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    unique: str,
    body: dict[str, object],
    field: str,
) -> None:
    response = await _create(client, admin_headers, **({"name": unique} | body))
    assert response.status_code == 400, response.text
    assert field in response.json(), response.json()
    assert await _count(client, admin_headers, unique) == 0


async def test_ipv6_ranges_are_accepted(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    body = (
        await _create(client, admin_headers, name=unique, ip_from="fd00::1", ip_to="fd00::ff")
    ).json()
    assert body["addresses_total"] == 255


@asynccontextmanager
async def api_allowing(
    runtime: Runtime, session_dir: Path, database_url: str, allowed: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """An API whose RACKSMITH_SCAN_ALLOWED_NETWORKS is ``allowed``, and an admin's headers."""
    settings = make_settings(
        session_dir, database_url, runtime.nats_url, scan_allowed_networks=allowed
    )
    transport = httpx.ASGITransport(app=create_app(Runtime(settings, runtime.nats_url)))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c, bearer((await obtain_tokens(c, "admin", "admin-password-1"))["access"])


async def test_allowed_networks_confine_ranges(
    runtime: Runtime, session_dir: Path, database_url: str, unique: str
) -> None:
    allowed = "10.20.0.0/16, 127.0.0.0/8"
    async with api_allowing(runtime, session_dir, database_url, allowed) as (c, headers):
        inside = await _create(c, headers, name=unique, cidr="10.20.5.0/24")
        assert inside.status_code == 201
        outside = await _create(c, headers, name=unique, cidr="10.21.5.0/24")
        assert outside.status_code == 400 and "cidr" in outside.json()
        straddling = await _create(
            c, headers, name=unique, ip_from="10.20.255.1", ip_to="10.21.0.5"
        )
        assert straddling.status_code == 400


@pytest.mark.parametrize(
    ("allowed", "body", "field"),
    [
        ("", {"ip_from": "127.0.0.1", "ip_to": "127.0.0.9"}, "ip_from"),
        ("", {"cidr": "127.0.10.0/24"}, "cidr"),
        # A range that ends on the platform's own host, or crosses into it.
        ("", {"ip_from": "126.255.255.250", "ip_to": "127.0.0.2"}, "ip_to"),
        ("", {"ip_from": "169.254.169.254", "ip_to": "169.254.169.254"}, "ip_from"),
        ("", {"cidr": "224.0.0.0/24"}, "cidr"),
        ("", {"ip_from": "0.0.0.1", "ip_to": "0.0.0.5"}, "ip_from"),
        ("", {"ip_from": "240.0.0.1", "ip_to": "240.0.0.2"}, "ip_from"),
        ("", {"ip_from": "::1", "ip_to": "::1"}, "ip_from"),
        ("", {"cidr": "fe80::/120"}, "cidr"),
        ("", {"cidr": "ff02::/120"}, "cidr"),
        ("", {"ip_from": "::ffff:127.0.0.1", "ip_to": "::ffff:127.0.0.1"}, "ip_from"),
        # Allowing everything is not allowing loopback by name.
        ("0.0.0.0/0", {"cidr": "127.0.0.0/30"}, "cidr"),
        # Naming one loopback network allows that one only.
        ("0.0.0.0/0,127.0.10.0/24", {"cidr": "127.0.11.0/30"}, "cidr"),
    ],
)
async def test_ranges_without_bmcs_are_refused_unless_named(
    runtime: Runtime,
    session_dir: Path,
    database_url: str,
    unique: str,
    allowed: str,
    body: dict[str, str],
    field: str,
) -> None:
    async with api_allowing(runtime, session_dir, database_url, allowed) as (c, headers):
        refused = await _create(c, headers, name=unique, **body)
        assert refused.status_code == 400, refused.text
        assert list(refused.json()) == [field]
        assert "RACKSMITH_SCAN_ALLOWED_NETWORKS" in refused.json()[field][0]
        assert await _count(c, headers, unique) == 0


async def test_a_named_loopback_network_may_be_scanned(
    runtime: Runtime, session_dir: Path, database_url: str, unique: str
) -> None:
    allowed = "10.0.0.0/8,127.0.10.0/24"
    async with api_allowing(runtime, session_dir, database_url, allowed) as (c, headers):
        assert (await _create(c, headers, name=unique, cidr="127.0.10.0/28")).status_code == 201
        assert (await _create(c, headers, name=unique, cidr="10.1.0.0/28")).status_code == 201


async def test_run_scan_unknown_id_is_400_naming_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    body = (await _create(client, admin_headers, name=unique, cidr="198.51.100.0/30")).json()
    response = await client.post(
        "/api/node_discovery/run_scan/",
        json={"scan_ranges": [body["id"], 987654]},
        headers=admin_headers,
    )
    assert response.status_code == 400
    assert response.json() == {"scan_ranges": ['Invalid pk "987654" - object does not exist.']}
    # All or nothing: the valid range was not started either.
    again = (await client.get(f"{RANGES}{body['id']}/", headers=admin_headers)).json()
    assert again["status"] == "ready" and again["last_scan_started_at"] is None


@pytest.mark.parametrize("body", [{}, {"scan_ranges": []}, {"scan_ranges": ["x"]}])
async def test_run_scan_body_is_validated(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, object]
) -> None:
    response = await client.post("/api/node_discovery/run_scan/", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert "scan_ranges" in response.json()


@asynccontextmanager
async def _on_own_broker(
    session_dir: Path, database_url: str, name: str
) -> AsyncIterator[tuple[EmbeddedNatsServer, Runtime]]:
    """A runtime on a nats-server of its own, which the test may stop (the suite's must stay)."""
    broker = EmbeddedNatsServer(session_dir / name)
    await broker.start()
    settings = make_settings(session_dir, database_url, broker.client_url())
    runtime = Runtime(settings, broker.client_url())
    await runtime.connect()
    try:
        yield broker, runtime
    finally:
        await runtime.close()
        await broker.stop()


async def test_broker_down_means_503_and_no_half_started_scan(
    runtime: Runtime, session_dir: Path, database_url: str, unique: str
) -> None:
    async with _on_own_broker(session_dir, database_url, f"doomed-{unique}") as (broker, doomed):
        transport = httpx.ASGITransport(app=create_app(doomed))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            headers = bearer((await obtain_tokens(c, "admin", "admin-password-1"))["access"])
            scan_range = (await _create(c, headers, name=unique, cidr="203.0.113.0/30")).json()
            await broker.stop()
            response = await c.post(
                "/api/node_discovery/run_scan/",
                json={"scan_ranges": [scan_range["id"]]},
                headers=headers,
            )
            assert response.status_code == 503
            after = (await c.get(f"{RANGES}{scan_range['id']}/", headers=headers)).json()
            assert after["status"] == "ready" and after["last_scan_started_at"] is None


async def test_discovery_is_superuser_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await client.post(
        "/api/users/",
        json={"username": f"op-{unique}", "password": "password-123"},
        headers=admin_headers,
    )
    headers = bearer((await obtain_tokens(client, f"op-{unique}", "password-123"))["access"])
    for method, url, body in [
        ("GET", RANGES, None),
        ("POST", RANGES, {"name": unique, "cidr": "10.0.0.0/30"}),
        ("POST", "/api/node_discovery/run_scan/", {"scan_ranges": [1]}),
        ("GET", "/api/node/", None),
        ("DELETE", "/api/node/1/", None),
    ]:
        response = await client.request(method, url, json=body, headers=headers)
        assert response.status_code == 403, (method, url)
        assert (await client.request(method, url, json=body)).status_code == 401
    assert await _count(client, admin_headers, unique) == 0


async def test_broker_lost_halfway_through_a_bulk_run_scan_starts_nothing(
    runtime: Runtime, session_dir: Path, database_url: str, unique: str
) -> None:
    async with _on_own_broker(session_dir, database_url, f"halfway-{unique}") as (broker, flaky):
        queue_one, queue_many = flaky.publisher.command, flaky.publisher.commands

        async def then_broker_goes(commands: Any) -> None:
            # The first range's command gets through; then the broker is gone.
            await queue_one(commands[0])
            await broker.stop()
            await queue_many(commands[1:])

        flaky.publisher.commands = then_broker_goes  # type: ignore[method-assign]
        transport = httpx.ASGITransport(app=create_app(flaky))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            headers = bearer((await obtain_tokens(c, "admin", "admin-password-1"))["access"])
            first, second = [
                (await _create(c, headers, name=f"{unique}-{n}", cidr=f"203.0.113.{n}/30")).json()
                for n in (0, 4)
            ]
            response = await c.post(
                "/api/node_discovery/run_scan/",
                json={"scan_ranges": [first["id"], second["id"]]},
                headers=headers,
            )
            # All or nothing: the command that got through belongs to a run that was undone,
            # so a scanner ignores it as stale.
            assert response.status_code == 503
            assert "started" not in response.json(), response.text
            statuses = [
                (await c.get(f"{RANGES}{r['id']}/", headers=headers)).json()["status"]
                for r in (first, second)
            ]
            assert statuses == ["ready", "ready"]
