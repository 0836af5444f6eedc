"""The AsyncAPI 3 document of Racksmith's events, generated from the catalog.

FastStream's generator does the work: every catalog entry becomes a publisher on a broker that is
never connected, with the CloudEvent envelope (its ``data`` typed by the entry's payload) as the
message schema. Its output is then brought in line with the AsyncAPI 3.0 specification where the
generator departs from it: component and operation keys may only hold ``[A-Za-z0-9_.-]`` (it uses
``:``), channel addresses with ``{id}`` must declare the parameter, and the NATS channel binding
has no fields (it adds ``subject``).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any, Literal

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, Field, create_model

from shared.contracts import subjects
from shared.contracts.catalog import EVENT_TYPES, EventType
from shared.messaging.streams import EVENTS_STREAM

TITLE = "Racksmith events"
VERSION = "1.0.0"
DESCRIPTION = f"""Every status change Racksmith makes, as a CloudEvents 1.0 structured-mode JSON
message on the JetStream stream `{EVENTS_STREAM}`, subject
`{subjects.EVENT_PREFIX}.<entity>.<id>.<change>`. The same envelope is served as Server-Sent Events
(`GET /api/events/stream/`) and pushed to webhooks. `id` is stable across redeliveries (use it to
deduplicate), `time` is the commit time of the change, and one entity's events are published in
the order its changes committed. See docs/events.md."""
# Where subscribers find the broker in the shipped deployments (docs/deploy.md).
SERVER_URL = "nats://nats:4222"


class CloudEventEnvelope(BaseModel):
    """CloudEvents 1.0 attributes shared by every Racksmith event."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(
        description="`evt:<entity>:<id>:<change>:<version>`; the same change always has the "
        "same id (it is also the JetStream Nats-Msg-Id)."
    )
    source: Literal["/racksmith"] = "/racksmith"
    subject: str = Field(description="`<entity>/<id>`, e.g. `node/42`.")
    time: datetime = Field(description="When the change was committed (UTC).")
    datacontenttype: Literal["application/json"] = "application/json"


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@cache  # the document and its conforming pass ask for each type's model several times
def message_model(event_type: EventType) -> type[BaseModel]:
    """The full message of one event type: the envelope with its ``type`` and ``data`` fixed."""
    name = f"{_pascal(event_type.entity)}{_pascal(event_type.change)}Event"
    model: type[BaseModel] = create_model(
        name,
        __base__=CloudEventEnvelope,
        __doc__=event_type.description,
        type=(Literal[event_type.type], Field(description="The event type.")),  # type: ignore[arg-type]
        data=(event_type.payload, Field(description="The entity as the REST API shows it.")),
    )
    return model


def channel_key(event_type: EventType) -> str:
    return f"{event_type.entity}_{event_type.change}"


def channel_address(event_type: EventType) -> str:
    return subjects.event_subject(event_type.entity, "{id}", event_type.change)


def _broker() -> NatsBroker:
    broker = NatsBroker(
        SERVER_URL,
        specification_url=SERVER_URL,
        description="The Racksmith NATS cluster (embedded `racksmith up`: printed at start).",
    )
    for event_type in EVENT_TYPES:
        broker.publisher(
            channel_address(event_type),
            stream=EVENTS_STREAM,
            title=channel_key(event_type),
            description=event_type.description,
            schema=message_model(event_type),
        )
    return broker


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (renames.get(value, value) if key == "$ref" else _rename_refs(value, renames))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node


def _conform(document: dict[str, Any]) -> dict[str, Any]:
    by_channel = {channel_key(t): t for t in EVENT_TYPES}
    renames: dict[str, str] = {}
    messages: dict[str, Any] = {}
    for key, message in document["components"]["messages"].items():
        event_type = by_channel[key.split(":", 1)[0]]
        name = message_model(event_type).__name__
        renames[f"#/components/messages/{key}"] = f"#/components/messages/{name}"
        # No correlation id travels with an event; the CloudEvent ``id`` identifies it.
        messages[name] = {
            "name": name,
            "title": event_type.type,
            "summary": event_type.description,
            "contentType": "application/cloudevents+json",
            "payload": message["payload"],
        }
    document["components"]["messages"] = messages
    for key, channel in document["channels"].items():
        event_type = by_channel[key]
        name = message_model(event_type).__name__
        renames[f"#/channels/{key}/messages/Message"] = f"#/channels/{key}/messages/{name}"
        channel["messages"] = {name: channel["messages"]["Message"]}
        channel["title"] = event_type.type
        channel["parameters"] = {
            "id": {"description": f"The {event_type.entity}'s id, as in the REST API."}
        }
        channel["bindings"] = {"nats": {}}
    for key, operation in document["operations"].items():
        operation["summary"] = by_channel[key].description
    document["servers"] = {
        "racksmith": {**document["servers"].pop("development"), "protocolVersion": "2.10"}
    }
    renames["#/servers/development"] = "#/servers/racksmith"
    document["info"]["description"] = " ".join(document["info"]["description"].split("\n"))
    # The generator's order varies between runs; the catalog's order makes a stable document.
    order = [channel_key(t) for t in EVENT_TYPES]
    for section in ("channels", "operations"):
        document[section] = {key: document[section][key] for key in order}
    components = document["components"]
    components["messages"] = {
        name: components["messages"][name]
        for name in (message_model(t).__name__ for t in EVENT_TYPES)
    }
    components["schemas"] = dict(sorted(components["schemas"].items()))
    conformed: dict[str, Any] = _rename_refs(document, renames)
    return conformed


@cache
def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a JSON-compatible dict (built once per process)."""
    spec = AsyncAPI(
        _broker(),
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        schema_version="3.0.0",
    )
    generated: dict[str, Any] = json.loads(spec.to_specification().to_json())
    conformed = _conform(generated)
    # `asyncapi` first: tools tell an AsyncAPI document by its first line.
    return {"asyncapi": conformed.pop("asyncapi"), **conformed}
