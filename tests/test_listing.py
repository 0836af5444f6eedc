"""The shared list machinery, exercised through /api/users/ (pagination, search, filters,
ordering) — every later list endpoint reuses the same code."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
async def seeded(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> list[str]:
    names = [f"list-{c}-user" for c in "edcba"]
    for i, name in enumerate(names):
        response = await client.post(
            "/api/users/",
            json={
                "username": name,
                "password": "password-123",
                "email": f"{name}@Example.org",
                "is_active": i % 2 == 0,
            },
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
    return sorted(names)


async def _get(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> httpx.Response:
    return await client.get(f"/api/users/?{query}", headers=headers)


async def test_unpaginated_returns_everything(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    body = (await _get(client, admin_headers, "search=list-")).json()
    assert body["count"] == 5 and len(body["results"]) == 5
    assert body["next"] is None and body["previous"] is None


async def test_pages_have_absolute_links(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    first = (await _get(client, admin_headers, "search=list-&ordering=username&page_size=2")).json()
    assert first["count"] == 5
    assert [u["username"] for u in first["results"]] == seeded[:2]
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/api/users/?")
    second = (await client.get(first["next"], headers=admin_headers)).json()
    assert [u["username"] for u in second["results"]] == seeded[2:4]
    assert second["previous"] and "page=1" in second["previous"]
    third = (await client.get(second["next"], headers=admin_headers)).json()
    assert [u["username"] for u in third["results"]] == seeded[4:]
    assert third["next"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page_size=1001", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=ten", "page_size"),
        ("ordering=password_hash", "ordering"),
        ("ordering=username,nope", "ordering"),
        ("is_active=maybe", "is_active"),
    ],
)
async def test_bad_list_parameters_are_400_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], query: str, field: str
) -> None:
    response = await _get(client, admin_headers, query)
    assert response.status_code == 400
    assert list(response.json()) == [field]


async def test_page_size_1000_is_allowed(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert (await _get(client, admin_headers, "page_size=1000")).status_code == 200


async def test_past_the_last_page_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    response = await _get(client, admin_headers, "search=list-&page=4&page_size=2")
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


async def test_empty_result_first_page_is_not_an_error(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = (await _get(client, admin_headers, "search=no-such-thing&page=1")).json()
    assert body == {"count": 0, "next": None, "previous": None, "results": []}


async def test_search_is_case_insensitive_substring(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    body = (await _get(client, admin_headers, "search=EXAMPLE.ORG")).json()
    assert {u["username"] for u in body["results"]} >= set(seeded)
    body = (await _get(client, admin_headers, "search=LIST-C")).json()
    assert [u["username"] for u in body["results"]] == ["list-c-user"]


async def test_search_treats_like_wildcards_literally(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    assert (await _get(client, admin_headers, "search=%25")).json()["count"] == 0
    assert (await _get(client, admin_headers, "search=list_")).json()["count"] == 0


async def test_ordering_descending_and_multiple(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    body = (await _get(client, admin_headers, "search=list-&ordering=-username")).json()
    assert [u["username"] for u in body["results"]] == seeded[::-1]
    body = (await _get(client, admin_headers, "search=list-&ordering=email,-username")).json()
    assert body["count"] == 5


async def test_exact_filters(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    body = (await _get(client, admin_headers, "search=list-&is_active=false")).json()
    assert {u["username"] for u in body["results"]} == {"list-d-user", "list-b-user"}
    body = (await _get(client, admin_headers, "username=list-a-user")).json()
    assert [u["username"] for u in body["results"]] == ["list-a-user"]
    body = (await _get(client, admin_headers, "username=list-a")).json()
    assert body["count"] == 0
