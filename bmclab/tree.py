"""In-memory Redfish resource store with ETags and an index of action targets."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]


def normalise(path: str) -> str:
    """Canonical lookup key: no trailing slash, no query."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path or "/"


@dataclass
class Resource:
    body: JsonObject
    headers: Mapping[str, str] = field(default_factory=dict)
    # Recorded bytes are served untouched until the first change so mockup quirks
    # (key order, whitespace) survive.
    _raw: bytes | None = None
    _etag: str | None = None

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = json.dumps(self.body, indent=2).encode()
        return self._raw

    @property
    def etag(self) -> str:
        if self._etag is None:
            recorded = self.body.get("@odata.etag")
            if isinstance(recorded, str) and recorded:
                self._etag = recorded
            else:
                self._etag = (
                    '"' + hashlib.sha1(self.raw, usedforsecurity=False).hexdigest()[:16] + '"'
                )
        return self._etag

    def changed(self) -> None:
        had_recorded = "@odata.etag" in self.body
        self._raw = None
        self._etag = None
        if had_recorded:
            # Services that embed @odata.etag keep it in step with the header.
            self.body.pop("@odata.etag")
            digest = hashlib.sha1(self.raw, usedforsecurity=False).hexdigest()[:8].upper()
            self.body["@odata.etag"] = f'W/"{digest}"'
            self._raw = None

    def etag_matches(self, if_match: str) -> bool:
        mine = _strip_weak(self.etag)
        return any(
            tag.strip() == "*" or _strip_weak(tag.strip()) == mine for tag in if_match.split(",")
        )


def _strip_weak(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


@dataclass(frozen=True)
class ActionRef:
    resource: str
    name: str  # e.g. "#ComputerSystem.Reset"


class ResourceStore:
    def __init__(self) -> None:
        self._resources: dict[str, Resource] = {}
        self._actions: dict[str, ActionRef] = {}

    def __contains__(self, path: str) -> bool:
        return normalise(path) in self._resources

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)

    def put(
        self,
        path: str,
        body: JsonObject,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Resource:
        key = normalise(path)
        resource = Resource(body, dict(headers or {}), raw)
        self._resources[key] = resource
        self._index_actions(key, body)
        return resource

    def get(self, path: str) -> Resource | None:
        return self._resources.get(normalise(path))

    def remove(self, path: str) -> None:
        self._resources.pop(normalise(path), None)

    def body(self, path: str) -> JsonObject:
        resource = self.get(path)
        if resource is None:
            raise KeyError(path)
        return resource.body

    def snapshot(self, path: str) -> JsonObject:
        return copy.deepcopy(self.body(path))

    def action(self, target: str) -> ActionRef | None:
        return self._actions.get(normalise(target))

    def add_member(self, collection: str, path: str, body: JsonObject) -> None:
        """Store `body` at `path` and list it in `collection` (created if absent)."""
        self.put(path, body)
        coll = self.get(collection)
        if coll is None:
            coll = self.put(
                collection,
                {
                    "@odata.id": collection,
                    "Name": collection.rsplit("/", 1)[-1],
                    "Members": [],
                    "Members@odata.count": 0,
                },
            )
        members = coll.body.setdefault("Members", [])
        members.append({"@odata.id": path})
        coll.body["Members@odata.count"] = len(members)
        coll.changed()

    def _index_actions(self, path: str, body: JsonObject) -> None:
        actions = body.get("Actions")
        if not isinstance(actions, dict):
            return
        candidates: list[tuple[str, Any]] = list(actions.items())
        oem = actions.get("Oem")
        if isinstance(oem, dict):
            candidates.extend(oem.items())
        for name, spec in candidates:
            if name.startswith("#") and isinstance(spec, dict):
                target = spec.get("target")
                if isinstance(target, str):
                    self._actions[normalise(target)] = ActionRef(path, name)


def links(value: Any) -> Iterator[str]:
    """Every @odata.id found anywhere inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "@odata.id" and isinstance(item, str):
                yield item
            else:
                yield from links(item)
    elif isinstance(value, list):
        for item in value:
            yield from links(item)
