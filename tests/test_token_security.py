"""Stale tokens do not get in (issue 16, finding 1): a deleted, deactivated, re-passworded or
demoted user's tokens, tokens of a user who lost a group, and used or revoked refresh tokens —
also when the API had the user's standing cached (each test uses the token once before the
change), while a cached standing spares authenticated requests a read of the user."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from services.api.app import create_app
from shared.models import LoginSession, User
from shared.platform.runtime import Runtime
from tests.conftest import bearer, make_settings, obtain_tokens
from tests.test_servers_api import count_statements

PASSWORD = "member-password-1"


async def _user(
    client: httpx.AsyncClient, headers: dict[str, str], username: str, **extra: object
) -> dict[str, Any]:
    body = {"username": username, "password": PASSWORD, **extra}
    response = await client.post("/api/users/", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _me(client: httpx.AsyncClient, access: str) -> int:
    return (await client.get("/api/users/me/", headers=bearer(access))).status_code


async def _refresh(client: httpx.AsyncClient, refresh: str) -> httpx.Response:
    return await client.post("/api/token/refresh/", json={"refresh": refresh})


async def _assert_dead(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    assert await _me(client, tokens["access"]) == 401
    response = await _refresh(client, tokens["refresh"])
    assert response.status_code == 401
    assert response.json() == {"detail": "Token is invalid or expired"}


async def test_deleted_users_tokens_do_not_become_a_new_superuser(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    victim = await _user(client, admin_headers, f"gone-{unique}")
    tokens = await obtain_tokens(client, f"gone-{unique}", PASSWORD)
    deleted = await client.delete(f"/api/users/{victim['id']}/", headers=admin_headers)
    assert deleted.status_code == 204
    # The next account created is a superuser: before, on SQLite it took the deleted id, and the
    # old tokens (which carried only that id) acted as the new superuser.
    admin = await _user(client, admin_headers, f"root-{unique}", is_superuser=True)
    assert admin["id"] > victim["id"]
    await _assert_dead(client, tokens)
    assert (await client.get("/api/users/", headers=bearer(tokens["access"]))).status_code == 401


async def test_password_change_ends_earlier_tokens(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    user = await _user(client, admin_headers, f"pw-{unique}")
    tokens = await obtain_tokens(client, f"pw-{unique}", PASSWORD)
    assert await _me(client, tokens["access"]) == 200
    changed = await client.patch(
        f"/api/users/{user['id']}/", json={"password": "new-password-2"}, headers=admin_headers
    )
    assert changed.status_code == 200
    await _assert_dead(client, tokens)
    fresh = await obtain_tokens(client, f"pw-{unique}", "new-password-2")
    assert await _me(client, fresh["access"]) == 200


async def test_deactivation_ends_tokens_for_good(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    user = await _user(client, admin_headers, f"off-{unique}")
    tokens = await obtain_tokens(client, f"off-{unique}", PASSWORD)
    assert await _me(client, tokens["access"]) == 200
    url = f"/api/users/{user['id']}/"
    await client.patch(url, json={"is_active": False}, headers=admin_headers)
    await _assert_dead(client, tokens)
    # Reactivating does not bring the old tokens back.
    await client.patch(url, json={"is_active": True}, headers=admin_headers)
    await _assert_dead(client, tokens)


async def test_demoted_superusers_tokens_end(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    user = await _user(client, admin_headers, f"demoted-{unique}", is_superuser=True)
    tokens = await obtain_tokens(client, f"demoted-{unique}", PASSWORD)
    assert (await client.get("/api/users/", headers=bearer(tokens["access"]))).status_code == 200
    await client.patch(
        f"/api/users/{user['id']}/", json={"is_superuser": False}, headers=admin_headers
    )
    await _assert_dead(client, tokens)


# A statement that reads the user table itself (not ``group_membership.user_id``).
_READS_USERS = re.compile(r'\b(FROM|JOIN)\s+"?user"?(\s|$)', re.IGNORECASE)


async def test_a_cached_standing_spares_the_user_read(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    await _user(client, admin_headers, f"cached-{unique}")
    headers = bearer((await obtain_tokens(client, f"cached-{unique}", PASSWORD))["access"])
    with count_statements(runtime) as first:
        assert (await client.get("/api/pool/", headers=headers)).status_code == 200
    assert any(_READS_USERS.search(s) for s in first.sql)
    with count_statements(runtime) as statements:
        assert (await client.get("/api/pool/", headers=headers)).status_code == 200
    assert statements.sql, "the pools themselves are read"
    assert not [s for s in statements.sql if _READS_USERS.search(s)]


async def test_a_change_written_by_any_session_of_the_process_applies_at_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    unique: str,
) -> None:
    """Not only the API's own routes: any ORM write of a user in this process (a command run
    in-process, a worker sharing it) drops the cached standing."""
    user = await _user(client, admin_headers, f"direct-{unique}")
    tokens = await obtain_tokens(client, f"direct-{unique}", PASSWORD)
    assert await _me(client, tokens["access"]) == 200
    async with runtime.db.session() as session:
        row = await session.get(User, user["id"])
        assert row is not None
        row.revoke_tokens()
        session.add(row)
        await session.commit()
    await _assert_dead(client, tokens)


@pytest.mark.parametrize("how", ["user_groups", "group_members", "group_deleted"])
async def test_losing_a_group_ends_tokens(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str, how: str
) -> None:
    group = (
        await client.post("/api/groups/", json={"name": f"g-{unique}"}, headers=admin_headers)
    ).json()
    other = (
        await client.post("/api/groups/", json={"name": f"o-{unique}"}, headers=admin_headers)
    ).json()
    user = await _user(client, admin_headers, f"m-{unique}", groups=[group["id"], other["id"]])
    tokens = await obtain_tokens(client, f"m-{unique}", PASSWORD)
    # Unrelated changes keep tokens working: joining a group, a new email.
    await client.patch(
        f"/api/users/{user['id']}/", json={"email": "m@example.org"}, headers=admin_headers
    )
    assert await _me(client, tokens["access"]) == 200
    if how == "user_groups":
        await client.patch(
            f"/api/users/{user['id']}/", json={"groups": [other["id"]]}, headers=admin_headers
        )
    elif how == "group_members":
        await client.patch(
            f"/api/groups/{group['id']}/", json={"members": []}, headers=admin_headers
        )
    else:
        await client.delete(f"/api/groups/{group['id']}/", headers=admin_headers)
    await _assert_dead(client, tokens)


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await _user(client, admin_headers, f"rot-{unique}")
    first = await obtain_tokens(client, f"rot-{unique}", PASSWORD)
    other_login = await obtain_tokens(client, f"rot-{unique}", PASSWORD)

    response = await _refresh(client, first["refresh"])
    assert response.status_code == 200
    second = response.json()
    assert set(second) == {"access", "refresh"} and second["refresh"] != first["refresh"]
    assert await _me(client, second["access"]) == 200

    # The used refresh token again (a stolen copy, or a replay): refused, and the session it
    # belongs to ends — the newest refresh token of that session stops working too.
    assert (await _refresh(client, first["refresh"])).status_code == 401
    assert (await _refresh(client, second["refresh"])).status_code == 401
    # Another login of the same user is another session: untouched.
    assert (await _refresh(client, other_login["refresh"])).status_code == 200


async def test_concurrent_refreshes_with_one_token_yield_one_pair(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await _user(client, admin_headers, f"race-{unique}")
    tokens = await obtain_tokens(client, f"race-{unique}", PASSWORD)
    responses = await asyncio.gather(*(_refresh(client, tokens["refresh"]) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]


async def test_revoke_logs_out(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await _user(client, admin_headers, f"out-{unique}")
    tokens = await obtain_tokens(client, f"out-{unique}", PASSWORD)
    response = await client.post("/api/token/revoke/", json={"refresh": tokens["refresh"]})
    assert response.status_code == 200
    assert response.json() == {}
    assert (await _refresh(client, tokens["refresh"])).status_code == 401
    # Logging out twice is not an error; a token that is not a refresh token is.
    again = await client.post("/api/token/revoke/", json={"refresh": tokens["refresh"]})
    assert again.status_code == 200
    wrong = await client.post("/api/token/revoke/", json={"refresh": tokens["access"]})
    assert wrong.status_code == 401


async def test_tokens_without_a_version_are_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Tokens issued before token versions existed carried only the user id."""
    secret = runtime.settings.secret_key
    assert secret is not None
    now = datetime.now(UTC)
    token = jwt.encode(
        {"token_type": "access", "exp": now + timedelta(hours=1), "iat": now, "jti": "j"}
        | {"user_id": 1},
        secret.get_secret_value(),
        algorithm="HS256",
    )
    assert await _me(client, token) == 401


async def test_signing_key_rotation_accepts_previous_keys_until_removed(
    runtime: Runtime, session_dir: Path, database_url: str, unique: str
) -> None:
    from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME

    old = make_settings(session_dir, database_url, runtime.nats_url)
    assert old.secret_key is not None
    rotated = make_settings(
        session_dir,
        database_url,
        runtime.nats_url,
        secret_key=SecretStr(f"new-signing-key-{unique}-0123456789abcdef"),
        secret_key_previous=old.secret_key,
    )
    finished = make_settings(
        session_dir, database_url, runtime.nats_url, secret_key=rotated.secret_key
    )

    async def app_client(settings: Any) -> httpx.AsyncClient:
        app = create_app(Runtime(settings, runtime.nats_url))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    async with await app_client(old) as before:
        tokens = await obtain_tokens(before, ADMIN_USERNAME, ADMIN_PASSWORD)
    async with await app_client(rotated) as during:
        assert await _me(during, tokens["access"]) == 200
        refreshed = (await _refresh(during, tokens["refresh"])).json()
    async with await app_client(finished) as after:
        assert await _me(after, tokens["access"]) == 401
        # What the rotated replica issued is signed with the new key.
        assert await _me(after, refreshed["access"]) == 200


async def test_expired_login_sessions_are_pruned(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    user = await _user(client, admin_headers, f"old-{unique}")
    async with runtime.db.session() as session:
        session.add(
            LoginSession(
                id=f"expired{unique}",
                user_id=user["id"],
                refresh_jti="x",
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        await session.commit()
    client_app = client._transport.app  # type: ignore[attr-defined]
    client_app.state.api.sessions._pruned_at = 0.0  # due now
    await obtain_tokens(client, f"old-{unique}", PASSWORD)
    async with runtime.db.session() as session:
        left = await session.exec(
            select(LoginSession.id).where(col(LoginSession.user_id) == user["id"])
        )
        ids = left.all()
    assert f"expired{unique}" not in ids and len(ids) == 1
