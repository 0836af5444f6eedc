"""Shared helpers for the BMC lab tests."""

from __future__ import annotations

import base64
import json
import os
import ssl
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp

from bmclab import Lab

AUTH = {"Authorization": "Basic " + base64.b64encode(b"root:calvin").decode()}


def mockups_dir() -> Path:
    override = os.environ.get("RACKSMITH_BMC_MOCKUPS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "bmc-mockups"


def mockup_dirs() -> list[Path]:
    root = mockups_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "redfish" / "v1").is_dir())


def client(lab: Lab, **kwargs: Any) -> aiohttp.ClientSession:
    """A client that trusts the lab CA (so the per-BMC SAN is checked too)."""
    ctx = ssl.create_default_context(cadata=lab.ca_cert_pem.decode())
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0), **kwargs)


def _strip(link: str) -> str:
    return link.split("#", 1)[0]


def odata_links(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "@odata.id" and isinstance(item, str):
                found.append(_strip(item))
            else:
                found.extend(odata_links(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(odata_links(item))
    return found


async def walk(
    session: aiohttp.ClientSession, base: str, **kwargs: Any
) -> dict[str, tuple[int, Any]]:
    """GET every resource reachable from the service root; path -> (status, parsed body)."""
    seen: dict[str, tuple[int, Any]] = {}
    queue = deque(["/redfish/v1/"])
    while queue:
        path = queue.popleft()
        key = path.rstrip("/") or "/"
        if key in seen or not key.startswith("/redfish/v1"):
            continue
        async with session.get(base + path, **kwargs) as resp:
            text = await resp.text()
            body = json.loads(text) if resp.status == 200 else None
            seen[key] = (resp.status, body)
        if body is not None:
            queue.extend(odata_links(body))
    return seen
