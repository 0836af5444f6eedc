"""/api/users/ and /api/groups/: superuser-only CRUD, write-only password, DRF-shaped errors."""

from __future__ import annotations

import httpx

from tests.conftest import bearer, obtain_tokens


async def _create_user(
    client: httpx.AsyncClient, headers: dict[str, str], username: str, **extra: object
) -> dict[str, object]:
    body = {"username": username, "password": "password-123", **extra}
    response = await client.post("/api/users/", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_user_crud(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    group = (
        await client.post("/api/groups/", json={"name": f"ops-{unique}"}, headers=admin_headers)
    ).json()
    user = await _create_user(
        client, admin_headers, f"u-{unique}", email="u@example.org", groups=[group["id"]]
    )
    assert user["groups"] == [group["id"]]
    assert "password" not in user and "password_hash" not in user
    url = f"/api/users/{user['id']}/"

    patched = await client.patch(url, json={"email": "new@example.org"}, headers=admin_headers)
    assert patched.status_code == 200
    assert patched.json()["email"] == "new@example.org"
    assert patched.json()["groups"] == [group["id"]]

    # PUT sends the required fields; omitted optional ones keep their values (DRF serializers).
    replaced = await client.put(url, json={"username": f"u-{unique}"}, headers=admin_headers)
    assert replaced.status_code == 200
    assert replaced.json()["email"] == "new@example.org"
    assert replaced.json()["groups"] == [group["id"]]
    replaced = await client.put(
        url, json={"username": f"u-{unique}", "groups": []}, headers=admin_headers
    )
    assert replaced.json()["groups"] == []

    members = (await client.get(f"/api/groups/{group['id']}/", headers=admin_headers)).json()
    assert members["members"] == []

    assert (await client.delete(url, headers=admin_headers)).status_code == 204
    assert (await client.get(url, headers=admin_headers)).status_code == 404


async def test_password_is_write_only_and_usable(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    user = await _create_user(client, admin_headers, f"pw-{unique}")
    tokens = await obtain_tokens(client, f"pw-{unique}", "password-123")
    await client.patch(
        f"/api/users/{user['id']}/", json={"password": "another-pass-1"}, headers=admin_headers
    )
    response = await client.post(
        "/api/token/", json={"username": f"pw-{unique}", "password": "password-123"}
    )
    assert response.status_code == 401
    assert tokens["access"]
    await obtain_tokens(client, f"pw-{unique}", "another-pass-1")


async def test_validation_errors_name_each_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/users/",
        json={"username": "bad name", "password": "short", "groups": ["x"]},
        headers=admin_headers,
    )
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"username", "password", "groups"}
    assert all(isinstance(m, list) and m for m in body.values())


async def test_unknown_group_id_is_400_and_nothing_written(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    response = await client.post(
        "/api/users/",
        json={"username": f"g-{unique}", "password": "password-123", "groups": [999999]},
        headers=admin_headers,
    )
    assert response.status_code == 400
    assert response.json() == {"groups": ['Invalid pk "999999" - object does not exist.']}
    listed = await client.get(f"/api/users/?username=g-{unique}", headers=admin_headers)
    assert listed.json()["count"] == 0


async def test_duplicate_names_are_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await _create_user(client, admin_headers, f"dup-{unique}")
    response = await client.post(
        "/api/users/",
        json={"username": f"dup-{unique}", "password": "password-123"},
        headers=admin_headers,
    )
    assert response.status_code == 400 and "username" in response.json()
    await client.post("/api/groups/", json={"name": f"g-{unique}"}, headers=admin_headers)
    response = await client.post(
        "/api/groups/", json={"name": f"g-{unique}"}, headers=admin_headers
    )
    assert response.status_code == 400 and "name" in response.json()


async def test_group_crud_with_members(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    user = await _create_user(client, admin_headers, f"m-{unique}")
    created = await client.post(
        "/api/groups/",
        json={"name": f"team-{unique}", "members": [user["id"]]},
        headers=admin_headers,
    )
    assert created.status_code == 201
    group = created.json()
    assert group["members"] == [user["id"]]
    me = (await client.get(f"/api/users/{user['id']}/", headers=admin_headers)).json()
    assert me["groups"] == [group["id"]]
    url = f"/api/groups/{group['id']}/"
    renamed = await client.patch(url, json={"name": f"team2-{unique}"}, headers=admin_headers)
    assert renamed.json() == {"id": group["id"], "name": f"team2-{unique}", "members": [user["id"]]}
    bad = await client.put(url, json={"name": "x", "members": [424242]}, headers=admin_headers)
    assert bad.status_code == 400 and "members" in bad.json()
    assert (await client.delete(url, headers=admin_headers)).status_code == 204
    assert (await client.get(url, headers=admin_headers)).status_code == 404


async def test_non_superuser_is_forbidden_but_sees_itself(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await _create_user(client, admin_headers, f"plain-{unique}")
    tokens = await obtain_tokens(client, f"plain-{unique}", "password-123")
    headers = bearer(tokens["access"])
    assert (await client.get("/api/users/me/", headers=headers)).status_code == 200
    for method, url in [
        ("GET", "/api/users/"),
        ("POST", "/api/users/"),
        ("GET", "/api/users/1/"),
        ("GET", "/api/groups/"),
        ("POST", "/api/groups/"),
    ]:
        response = await client.request(method, url, headers=headers, json={})
        assert response.status_code == 403, (method, url)
        assert response.json() == {"detail": "You do not have permission to perform this action."}


async def test_anonymous_is_401_everywhere(client: httpx.AsyncClient) -> None:
    for method, url in [("GET", "/api/users/"), ("GET", "/api/groups/"), ("GET", "/api/users/me/")]:
        assert (await client.request(method, url)).status_code == 401


async def test_inactive_user_cannot_log_in(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await _create_user(client, admin_headers, f"off-{unique}", is_active=False)
    response = await client.post(
        "/api/token/", json={"username": f"off-{unique}", "password": "password-123"}
    )
    assert response.status_code == 401


async def test_listed_users_are_the_users_as_retrieved(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    """Listed users (columns plus one read of the memberships) are, field for field and in the
    same order, what a single GET answers — groups ascending, paginated or not."""
    groups = [
        (
            await client.post("/api/groups/", json={"name": f"{n}-{unique}"}, headers=admin_headers)
        ).json()["id"]
        for n in ("b", "a")
    ]
    await _create_user(client, admin_headers, f"l1-{unique}", groups=groups[::-1])
    await _create_user(client, admin_headers, f"l2-{unique}")
    paged = await client.get(f"/api/users/?search=-{unique}&page_size=1", headers=admin_headers)
    full = await client.get(f"/api/users/?search=-{unique}", headers=admin_headers)
    assert paged.json()["count"] == full.json()["count"] == 2
    assert full.json()["results"][:1] == paged.json()["results"]
    for listed in full.json()["results"]:
        retrieved = await client.get(f"/api/users/{listed['id']}/", headers=admin_headers)
        assert list(listed) == list(retrieved.json())
        assert listed == retrieved.json()
    assert full.json()["results"][0]["groups"] == sorted(groups)
