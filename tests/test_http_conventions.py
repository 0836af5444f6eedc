"""Routing conventions: JSON 404/405, health, metrics, request ids."""

from __future__ import annotations

import httpx


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


async def test_non_integer_id_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/api/users/abc/", headers=admin_headers)
    assert response.status_code == 400
    assert response.json() == {"user_id": ["A valid integer is required."]}


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
