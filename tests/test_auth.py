"""Tokens: simplejwt-compatible issue, refresh, expiry and error bodies; throttling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from services.api.app import create_app
from shared.platform.runtime import Runtime
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, bearer, make_settings, obtain_tokens


async def test_token_pair_has_simplejwt_claims(client: httpx.AsyncClient) -> None:
    tokens = await obtain_tokens(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert set(tokens) == {"access", "refresh"}
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    assert claims["token_type"] == "access"
    assert {"exp", "iat", "jti", "user_id"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 24 * 3600
    refresh_claims = jwt.decode(tokens["refresh"], options={"verify_signature": False})
    assert refresh_claims["token_type"] == "refresh"


async def test_me_with_token(client: httpx.AsyncClient) -> None:
    tokens = await obtain_tokens(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    response = await client.get("/api/users/me/", headers=bearer(tokens["access"]))
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == ADMIN_USERNAME
    assert body["is_superuser"] is True
    assert "password" not in body and "password_hash" not in body


async def test_wrong_password_is_401_with_simplejwt_detail(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/token/", json={"username": ADMIN_USERNAME, "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "No active account found with the given credentials"}


async def test_unknown_user_is_the_same_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/token/", json={"username": "nobody", "password": "x"})
    assert response.status_code == 401
    assert response.json()["detail"] == "No active account found with the given credentials"


async def test_missing_fields_are_400_naming_them(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/token/", json={"username": ADMIN_USERNAME})
    assert response.status_code == 400
    assert response.json() == {"password": ["This field is required."]}


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/token/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "non_field_errors" in response.json() or response.json()


async def test_refresh_gives_new_access(client: httpx.AsyncClient) -> None:
    tokens = await obtain_tokens(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    response = await client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert response.status_code == 200
    access = response.json()["access"]
    assert (await client.get("/api/users/me/", headers=bearer(access))).status_code == 200


async def test_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    tokens = await obtain_tokens(client, ADMIN_USERNAME, ADMIN_PASSWORD)
    response = await client.post("/api/token/refresh/", json={"refresh": tokens["access"]})
    assert response.status_code == 401
    assert response.json() == {"detail": "Token is invalid or expired"}
    response = await client.get("/api/users/me/", headers=bearer(tokens["refresh"]))
    assert response.status_code == 401


async def test_expired_token_is_rejected(client: httpx.AsyncClient, runtime: Runtime) -> None:
    secret = runtime.settings.secret_key
    assert secret is not None
    past = datetime.now(UTC) - timedelta(hours=1)
    token = jwt.encode(
        {
            "token_type": "access",
            "exp": past,
            "iat": past - timedelta(hours=1),
            "jti": "x",
            "user_id": 1,
        },
        secret.get_secret_value(),
        algorithm="HS256",
    )
    response = await client.get("/api/users/me/", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {"detail": "Given token not valid for any token type"}
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer a.b.c", "Basic Zm9vOmJhcg=="])
async def test_garbage_credentials_are_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/users/me/", headers={"Authorization": header})
    assert response.status_code == 401


async def test_no_credentials_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/users/me/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


async def test_token_endpoint_is_throttled(
    runtime: Runtime, session_dir: Path, database_url: str
) -> None:
    settings = make_settings(
        session_dir, database_url, runtime.nats_url, token_rate_limit="3/minute"
    )
    app = create_app(Runtime(settings, runtime.nats_url))
    # The throttled app shares the database but not the broker; token issue needs neither NATS
    # nor anything but its own limiter.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for _ in range(3):
            response = await c.post("/api/token/", json={"username": "x", "password": "y"})
            assert response.status_code == 401
        response = await c.post(
            "/api/token/", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
        )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["detail"].startswith("Request was throttled.")
