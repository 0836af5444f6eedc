"""The event contract: the catalog, the AsyncAPI document generated from it, and the code that
emits events all agree; events carry their commit time."""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import asyncapi, catalog
from shared.contracts.events import CloudEvent
from shared.messaging import outbox
from shared.models import OutboxEvent, Pool
from shared.platform.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
EVENT_BUILDER = re.compile(
    rf"^(?:_member_event|entry_event|(?P<entity>{'|'.join(catalog.ENTITIES)})_event)$"
)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validator_for(document: dict[str, Any], event_type: str) -> jsonschema.Validator:
    """A JSON Schema validator for the message of ``event_type`` in the AsyncAPI document."""
    message = next(
        m for m in document["components"]["messages"].values() if m["title"] == event_type
    )
    registry: Registry[Any] = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": "urn:asyncapi" + message["payload"]["$ref"]}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def emitted_in_code() -> set[tuple[str | None, str]]:
    """(entity or None, change) for every literal change passed to an event builder in the code.

    ``None`` is for the pool-membership helper, which builds for servers and switches alike, and
    for the artifact lifecycle's ``entry_event`` (firmware binaries and OS images alike).
    """
    found: set[tuple[str | None, str]] = set()
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            match = EVENT_BUILDER.match(name)
            if not match or len(node.args) < 2:
                continue
            change = node.args[1]
            if isinstance(change, ast.Constant) and isinstance(change.value, str):
                found.add((match.group("entity"), change.value))
    return found


async def test_asyncapi_is_yaml_by_default_json_on_request_and_valid(
    client: httpx.AsyncClient,
) -> None:
    as_yaml = await client.get("/api/schema/asyncapi/")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/vnd.aai.asyncapi+yaml")
    document = yaml.safe_load(as_yaml.text)
    as_json = await client.get("/api/schema/asyncapi/", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"].startswith("application/vnd.aai.asyncapi+json")
    assert (
        as_json.json() == document == (await client.get("/api/schema/asyncapi/?format=json")).json()
    )

    assert document["asyncapi"] == "3.0.0"
    with warnings.catch_warnings():  # the validator's models shadow a BaseModel attribute
        warnings.simplefilter("ignore", UserWarning)
        from asyncapi3 import AsyncAPI3

        AsyncAPI3.model_validate(document)
    for ref in _refs(document):
        assert _resolve(document, ref) is not None, ref
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


async def test_asyncapi_lists_exactly_the_catalog() -> None:
    document = asyncapi.document()
    titles = {m["title"] for m in document["components"]["messages"].values()}
    assert titles == {t.type for t in catalog.EVENT_TYPES}
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {f"racksmith.evt.{t.entity}.{{id}}.{t.change}" for t in catalog.EVENT_TYPES}
    assert set(document["operations"]) == set(document["channels"])


def test_code_emits_only_catalogued_types_and_every_type_is_emitted() -> None:
    emitted = emitted_in_code()
    catalogued = {(t.entity, t.change) for t in catalog.EVENT_TYPES}
    for entity, change in emitted:
        candidates = {e for e, c in catalogued if c == change}
        assert (entity in candidates) if entity else candidates, (entity, change)
    for entity, change in catalogued:
        assert (entity, change) in emitted or (None, change) in emitted, (
            f"{entity}.{change} is catalogued but nothing emits it"
        )


def test_staging_outside_the_catalog_or_with_wrong_data_raises() -> None:
    pool = Pool(id=1, name="p", description="", version=1)
    with pytest.raises(catalog.UnknownEventTypeError):
        catalog.pool_event(pool, "renamed")
    with pytest.raises(ValueError, match="servers"):
        catalog.build(
            "node",
            1,
            "registered",
            version=1,
            public=catalog.PoolEventData(id=1, name="p", description="", group=None, parent=None),
            extra={},
        )


def test_asyncapi_document_in_docs_is_current() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "services.cli", "asyncapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == (ROOT / "docs" / "asyncapi.yaml").read_text(), (
        "docs/asyncapi.yaml is stale: run `racksmith asyncapi --output docs/asyncapi.yaml`"
    )


async def test_asyncapi_viewer_is_served_from_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/schema/asyncapi/viewer/")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    for source in sources:
        assert source.startswith("/api/schema/"), source
        asset = await client.get(source)
        assert asset.status_code == 200, source
        # Nothing may be fetched from outside (the bundle's one URL is an example in its docs).
        assert not re.search(r"https?://(?!example\.com/)[\w.-]+", asset.text), source


async def _create_pool(session: AsyncSession, name: str) -> Pool:
    """A pool added to ``session`` with its ``created`` event staged, not yet committed."""
    pool = Pool(name=name, description="")
    session.add(pool)
    await session.flush()
    outbox.stage(session, catalog.pool_event(pool, "created"))
    return pool


async def test_event_time_is_the_commit_time(runtime: Runtime, unique: str) -> None:
    async with runtime.db.session() as session:
        pool = await _create_pool(session, f"timed {unique}")
        await asyncio.sleep(0.05)  # a handler's work between building the event and committing
        before_commit = datetime.now(UTC)
        await session.commit()
    nats = runtime.nats
    assert nats is not None
    js = nats.jetstream()
    sub = await js.subscribe(f"racksmith.evt.pool.{pool.id}.created", ordered_consumer=True)
    try:
        await outbox.relay(runtime.db, runtime.publisher)
        message = await sub.next_msg(timeout=10)
    finally:
        await sub.unsubscribe()
    event = CloudEvent.model_validate_json(message.data)
    assert event.time >= before_commit
    validator_for(asyncapi.document(), event.type).validate(event.model_dump(mode="json"))


async def test_a_rolled_back_change_stages_nothing(runtime: Runtime, unique: str) -> None:
    async with runtime.db.session() as session:
        pool = await _create_pool(session, f"undone {unique}")
        await session.rollback()
        await session.commit()
    async with runtime.db.session() as session:
        rows = (
            await session.exec(
                select(OutboxEvent).where(
                    col(OutboxEvent.event_id) == f"evt:pool:{pool.id}:created:1"
                )
            )
        ).all()
    assert rows == []


def test_docs_list_every_event_type() -> None:
    listed = set(
        re.findall(
            r"^\| `(io\.racksmith\.[\w.]+)` \|", (ROOT / "docs" / "events.md").read_text(), re.M
        )
    )
    assert listed == {t.type for t in catalog.EVENT_TYPES}
