"""The lab manifest: what is listening where, for tests and for humans."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ManifestEntry:
    index: int
    address: str
    port: int
    url: str
    kind: str  # "synthetic" or "mockup"
    flavour: str  # flavour name, or "mockup:<directory name>"
    manufacturer: str | None
    model: str | None
    serial: str | None
    system_count: int
    system_ids: tuple[str, ...]
    fault: str | None
    username: str
    password: str
    credentials_ok: bool

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["system_ids"] = list(self.system_ids)
        return data


def manifest_json(entries: Sequence[ManifestEntry], ca_cert_pem: bytes | None = None) -> str:
    doc: dict[str, Any] = {"bmcs": [e.to_dict() for e in entries]}
    if ca_cert_pem is not None:
        doc["ca_cert_pem"] = ca_cert_pem.decode()
    return json.dumps(doc, indent=2)
