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
        ("is_active=maybe", "is_active"),
        ("id=abc", "id"),
        ("id__in=1,x", "id__in"),
        ("date_joined=yesterday", "date_joined"),
    ],
)
async def test_bad_filter_values_are_400_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], query: str, field: str
) -> None:
    response = await _get(client, admin_headers, query)
    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=abc"])
async def test_a_page_that_cannot_exist_is_404_like_drf(
    client: httpx.AsyncClient, admin_headers: dict[str, str], query: str
) -> None:
    response = await _get(client, admin_headers, query)
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


async def test_page_size_is_capped_and_bad_ones_are_ignored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    everything = (await _get(client, admin_headers, "")).json()["count"]
    assert (await _get(client, admin_headers, "page_size=1000")).status_code == 200
    capped = (await _get(client, admin_headers, "page_size=5000&ordering=id")).json()
    assert capped["count"] == everything and len(capped["results"]) == min(everything, 1000)
    for garbage in ("0", "-3", "ten", ""):
        body = (await _get(client, admin_headers, f"search=list-&page_size={garbage}")).json()
        assert body["count"] == 5 and len(body["results"]) == 5 and body["next"] is None
    # With a page but no usable page size, pages have the default size.
    body = (await _get(client, admin_headers, "search=list-&page=1&page_size=ten")).json()
    assert len(body["results"]) == 5


async def test_page_last(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    body = (
        await _get(client, admin_headers, "search=list-&ordering=username&page=last&page_size=2")
    ).json()
    assert [u["username"] for u in body["results"]] == seeded[4:]
    assert body["next"] is None and "page=2" in body["previous"]
    empty = (await _get(client, admin_headers, "search=nothing-matches&page=last")).json()
    assert empty["count"] == 0 and empty["results"] == []


async def test_unknown_ordering_fields_are_ignored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    body = (await _get(client, admin_headers, "search=list-&ordering=password_hash")).json()
    assert [u["username"] for u in body["results"]] == sorted(
        seeded, key=lambda name: "edcba".index(name[5])
    )
    body = (await _get(client, admin_headers, "search=list-&ordering=nope,-username")).json()
    assert [u["username"] for u in body["results"]] == seeded[::-1]


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


async def test_every_scalar_field_filters_and_ids_take_in(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    users = (await _get(client, admin_headers, "search=list-&ordering=username")).json()["results"]
    first, second = users[0], users[1]
    body = (await _get(client, admin_headers, f"email={first['email']}")).json()
    assert [u["id"] for u in body["results"]] == [first["id"]]
    body = (
        await _get(client, admin_headers, f"id__in={first['id']},{second['id']},99999999999")
    ).json()
    assert {u["id"] for u in body["results"]} == {first["id"], second["id"]}
    body = (await _get(client, admin_headers, f"id={first['id']}&is_superuser=false")).json()
    assert body["count"] == 1
    # An id beyond any id matches nothing (and never reaches the database as an overflow).
    assert (await _get(client, admin_headers, "id=3565732929239296642331333141463040")).json()[
        "count"
    ] == 0


async def test_unknown_parameters_are_ignored(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: list[str]
) -> None:
    body = (await _get(client, admin_headers, "search=list-&no_such_filter=1")).json()
    assert body["count"] == 5
