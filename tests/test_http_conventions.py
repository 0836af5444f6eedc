"""Routing conventions: JSON 404/405, health, metrics, request ids."""

from __future__ import annotations

import json

import httpx
import pytest


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/token/")
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "DELETE" not allowed.'}


async def test_unknown_object_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/api/users/987654/", headers=admin_headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize(
    "path",
    [
        "/api/users/abc/",
        "/api/pool/3565732929239296642331333141463040/",
        "/api/server/-1/",
        "/api/node/2147483648/",
        "/api/node_discovery/scan_range/1.5/",
    ],
)
async def test_an_id_that_cannot_exist_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str
) -> None:
    response = await client.get(path, headers=admin_headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def _decoder_says(document: str) -> str:
    try:
        json.loads(document)
    except json.JSONDecodeError as exc:
        return str(exc)
    raise AssertionError("valid JSON")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "JSON parse error - " + _decoder_says("{")),
        (b'{"name": "x",}', "JSON parse error - " + _decoder_says('{"name": "x",}')),
        (b"not json", "JSON parse error - Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe{", None),
    ],
)
async def test_malformed_json_is_drfs_parse_error(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: bytes, message: str | None
) -> None:
    response = await client.post(
        "/api/groups/",
        content=body,
        headers=admin_headers | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    if message is not None:
        assert response.json() == {"detail": message}
    elif body:
        assert response.json()["detail"].startswith("JSON parse error - ")


async def test_ids_beyond_any_id_in_bodies_are_400_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    huge = 3565732929239296642331333141463040
    for path, body, field in [
        ("/api/node_discovery/run_scan/", {"scan_ranges": [huge]}, "scan_ranges"),
        ("/api/node/register/", {"nodes": [huge], "auth_profile": huge}, "auth_profile"),
        ("/api/pool/1/assign_servers/", {"servers": [huge]}, "servers"),
        ("/api/pool/1/assign_switches/", {"switches": [huge]}, "switches"),
        ("/api/server/refresh/", {"servers": [huge]}, "servers"),
        ("/api/pool/", {"name": "p", "parent": huge}, "parent"),
        ("/api/groups/", {"name": "g-huge", "members": [huge]}, "members"),
    ]:
        response = await client.post(path, json=body, headers=admin_headers)
        assert response.status_code == 400, (path, response.text)
        assert field in response.json(), (path, response.text)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True}


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    text = (await client.get("/metrics")).text
    assert 'racksmith_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    assert len((await client.get("/healthz")).headers["X-Request-ID"]) == 32
