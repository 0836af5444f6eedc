"""Load a DMTF Mockup-Creator directory (``redfish/v1/**/index.json``) into a store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmclab.tree import ResourceStore

# Hop-by-hop and framing headers recorded by Mockup-Creator must not be replayed.
_SKIP_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "content-encoding",
        "date",
        "server",
        "set-cookie",
    }
)


@dataclass(frozen=True)
class MockupInfo:
    name: str
    manufacturer: str | None
    model: str | None
    serial: str | None
    system_ids: tuple[str, ...]
    sessions_path: str


def _base(directory: Path) -> tuple[Path, str]:
    if (directory / "redfish" / "v1").is_dir():
        return directory, ""
    if (directory / "index.json").is_file() and directory.name == "v1":
        # Short form: the directory itself is /redfish/v1.
        return directory, "/redfish/v1"
    raise ValueError(f"{directory} is not a Redfish mockup (no redfish/v1 tree)")


def _get_headers(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    data: Any = json.loads(path.read_text())
    section = data.get("GET", data) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in section.items() if k.lower() not in _SKIP_HEADERS}


def load_mockup(directory: Path, store: ResourceStore) -> MockupInfo:
    directory = directory.resolve()
    base, prefix = _base(directory)
    for index in sorted(base.rglob("index.json")):
        rel = index.parent.relative_to(base).as_posix()
        uri = prefix + ("/" + rel if rel != "." else "")
        raw = index.read_bytes()
        try:
            body = json.loads(raw)
        except ValueError:
            # Kept as a quirk: served byte for byte, never parsed again.
            body = {}
        if not isinstance(body, dict):
            body = {}
        store.put(uri or "/", body, _get_headers(index.parent / "headers.json"), raw)
    root = store.get("/redfish/v1")
    if root is None:
        raise ValueError(f"{directory} has no service root")
    sessions = root.body.get("Links", {}).get("Sessions", {}).get("@odata.id")
    if not isinstance(sessions, str):
        sessions = "/redfish/v1/SessionService/Sessions"
    systems = store.get("/redfish/v1/Systems")
    members = systems.body.get("Members", []) if systems else []
    system_ids = tuple(
        str(m.get("@odata.id", "")).rstrip("/").rsplit("/", 1)[-1]
        for m in members
        if isinstance(m, dict)
    )
    first: dict[str, Any] = {}
    if members and isinstance(members[0], dict):
        resource = store.get(str(members[0].get("@odata.id", "")))
        first = resource.body if resource else {}
    return MockupInfo(
        name=directory.name,
        manufacturer=first.get("Manufacturer"),
        model=first.get("Model"),
        serial=first.get("SerialNumber"),
        system_ids=system_ids,
        sessions_path=sessions,
    )
