"""Uploading to the catalogs the way clients do, and multipart bodies in any part order."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    path: str,
    content: bytes,
    filename: str,
    **fields: Any,
) -> httpx.Response:
    """POST a multipart upload: the file in a `file` part, lists as repeated fields."""
    data = {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in fields.items()}
    return await client.post(path, headers=headers, files={"file": (filename, content)}, data=data)


def multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body with parts in exactly this order: (name, value, filename)."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
