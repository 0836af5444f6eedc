"""The OpenAPI document (YAML and JSON) and its offline viewers."""

from __future__ import annotations

import re

import httpx
import yaml
from openapi_spec_validator import validate

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


async def test_schema_is_yaml_by_default_and_valid(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/schema/")
    assert response.status_code == 200
    assert "openapi" in response.headers["content-type"]
    validate(yaml.safe_load(response.text))


async def test_schema_json_by_accept_or_format(client: httpx.AsyncClient) -> None:
    by_accept = await client.get("/api/schema/", headers={"Accept": "application/json"})
    by_format = await client.get("/api/schema/?format=json")
    assert by_accept.json() == by_format.json()
    validate(by_accept.json())


async def test_every_operation_is_documented(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/schema/?format=json")).json()
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]
    assert len(operations) > 10
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        assert op.get("tags"), where
        assert any(code.startswith(("4", "5")) for code in op["responses"]), where
        assert "422" not in op["responses"], where
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


async def test_list_filters_are_documented(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/schema/?format=json")).json()
    params = {p["name"] for p in schema["paths"]["/api/users/"]["get"]["parameters"]}
    assert {"page", "page_size", "search", "ordering", "is_superuser"} <= params


async def test_viewers_load_nothing_from_outside(client: httpx.AsyncClient) -> None:
    for page in ("/api/schema/swagger-ui/", "/api/schema/redoc/"):
        response = await client.get(page)
        assert response.status_code == 200
        assert not re.search(r"https?://", response.text), page
        for asset in re.findall(r'(?:src|href)="([^"]+)"', response.text):
            assert (await client.get(asset)).status_code == 200, asset
