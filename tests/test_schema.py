"""The OpenAPI document (YAML and JSON) and its offline viewers."""

from __future__ import annotations

import re
from typing import Literal

import httpx
import yaml
from fastapi import FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from services.api.openapi30 import downgrade

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


async def test_schema_is_openapi_30_yaml_by_default_and_valid(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/schema/")
    assert response.status_code == 200
    assert "openapi" in response.headers["content-type"]
    document = yaml.safe_load(response.text)
    assert document["openapi"] == "3.0.3"
    validate(document)


async def test_schema_31_on_request_and_valid(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/schema/?version=3.1&format=json")).json()
    assert document["openapi"].startswith("3.1")
    validate(document)
    legacy = (await client.get("/api/schema/?format=json")).json()
    assert set(document["paths"]) == set(legacy["paths"])
    # The same API in both: 3.0 says "nullable" where 3.1 says "or null".
    assert '"type": "null"' not in str(legacy).replace("'", '"')
    bad = await client.get("/api/schema/?version=2.0")
    assert bad.status_code == 400 and list(bad.json()) == ["version"]


async def test_operation_ids_are_the_guides_names(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/schema/?format=json")).json()
    ids = {
        f"{method} {path}": op["operationId"]
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }
    assert len(set(ids.values())) == len(ids)
    for where, operation_id in ids.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), where
    assert ids["get /api/node_discovery/scan_range/"] == "list_scan_ranges"
    assert ids["post /api/node_discovery/run_scan/"] == "run_scan"
    assert ids["post /api/node/{node_id}/register/"] == "register_node"
    assert ids["post /api/token/"] == "obtain_token"


async def test_shapes_have_names_of_their_own(client: httpx.AsyncClient) -> None:
    """Two models of one name get module-qualified schema names, which generated clients turn
    into duplicate classes (and drop the responses that use them)."""
    schema = (await client.get("/api/schema/?format=json")).json()
    qualified = [name for name in schema["components"]["schemas"] if "__" in name]
    assert qualified == []


async def test_every_answer_a_route_gives_has_a_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/schema/?format=json")).json()
    for path in ("/api/node/{node_id}/register/", "/api/node/register/"):
        responses = schema["paths"][path]["post"]["responses"]
        for status in ("200", "202", "503"):
            assert "schema" in responses[status]["content"]["application/json"], (path, status)
    assert "409" in schema["paths"]["/api/server/{server_id}/"]["patch"]["responses"]
    assert "429" in schema["paths"]["/api/token/"]["post"]["responses"]
    assert "429" in schema["paths"]["/api/events/stream/"]["get"]["responses"]
    assert {"503", "504"} <= set(
        schema["paths"]["/api/webhooks/{webhook_id}/test/"]["post"]["responses"]
    )
    run_scan = schema["paths"]["/api/node_discovery/run_scan/"]["post"]["responses"]
    ref = run_scan["503"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    # A bulk start is all or nothing, so the 503 has no partial list to report.
    assert set(schema["components"]["schemas"][ref]["properties"]) == {"detail"}


async def test_every_route_that_takes_a_body_documents_413(client: httpx.AsyncClient) -> None:
    """The body cap (RACKSMITH_MAX_BODY_BYTES, or an upload route's own) applies as a body is
    read: a route that takes one may answer 413, one that takes none never does."""
    schema = (await client.get("/api/schema/?format=json")).json()
    operations = [
        (f"{method} {path}", op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]
    for where, op in operations:
        assert ("413" in op["responses"]) == ("requestBody" in op), where
    token = schema["paths"]["/api/token/"]["post"]["responses"]["413"]
    assert "1048576 bytes" in token["description"]
    upload = schema["paths"]["/api/firmware/"]["post"]["responses"]["413"]
    assert "JSON body" in upload["description"]


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


class _Part(BaseModel):
    name: str


class _Shape(BaseModel):
    kind: Literal["bios"] = "bios"
    part: _Part | None = None
    main: _Part = Field(default_factory=lambda: _Part(name="x"), description="the main one")
    size: float = Field(default=1, gt=0, examples=[2.5])


def test_the_30_document_of_shapes_fastapi_writes_in_31_is_valid() -> None:
    """Uploads, literals, optional references and defaults on references, as other routes
    (firmware uploads, say) will have them: the 3.0 restatement stays a valid 3.0 document."""
    app = FastAPI()

    @app.post("/shape/")
    async def shape(body: _Shape) -> _Shape:
        return body

    original = app.openapi()
    # What FastAPI writes for a multipart file field (UploadFile).
    original["components"]["schemas"]["Upload"] = {
        "type": "object",
        "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}},
        "required": ["file"],
    }
    converted = downgrade(original)
    upload = converted["components"]["schemas"]["Upload"]["properties"]["file"]
    assert upload == {"type": "string", "format": "binary"}
    validate(converted)
    assert converted["openapi"] == "3.0.3" and original["openapi"].startswith("3.1")
    assert '"type": "null"' not in str(converted).replace("'", '"')
