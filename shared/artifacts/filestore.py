"""Artifacts as files under one directory (default: ``artifacts/`` in the state dir).

A put writes to a temporary file in ``.incoming/`` beside the objects, fsyncs it and renames it
into place: the rename is atomic, so a reader sees a whole object or none, and a crash mid-upload
leaves only a temporary file (``sweep_incoming`` removes old ones). Files and directories are
private to the service account (0600 / 0700): firmware images are not for other local users.
Disk I/O runs in worker threads, in blocks of ``WRITE_BLOCK``, so the event loop never waits on
the disk.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from shared.artifacts.store import READ_CHUNK, Measured, ObjectMissingError, StoredObject, Verify
from shared.artifacts.store import new_key as _new_key

INCOMING = ".incoming"
# Request bodies arrive in small pieces; writing them in larger blocks saves thread hops.
WRITE_BLOCK = 1024 * 1024


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"Invalid artifact key {key!r}.")
        return self.root / key

    def _ensure_dirs(self) -> Path:
        incoming = self.root / INCOMING
        for directory in (self.root, incoming):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return incoming

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_size: int | None = None,
        verify: Verify | None = None,
    ) -> StoredObject:
        incoming = await asyncio.to_thread(self._ensure_dirs)
        key = _new_key()
        temporary = incoming / key
        measured = Measured(chunks, max_size=max_size, verify=verify)
        fd = await asyncio.to_thread(
            os.open, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        kept = False
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                block = bytearray()
                async for chunk in measured:
                    block += chunk
                    if len(block) >= WRITE_BLOCK:
                        await asyncio.to_thread(out.write, bytes(block))
                        block.clear()
                if block:
                    await asyncio.to_thread(out.write, bytes(block))
                # Durable before it becomes visible: a crash after the rename must not leave a
                # ready artifact with missing bytes.
                await asyncio.to_thread(os.fsync, out.fileno())
            await asyncio.to_thread(os.replace, temporary, self._path(key))
            kept = True
        finally:
            if not kept:
                with suppress(FileNotFoundError):
                    temporary.unlink()
        digest = measured.digest()
        return StoredObject(key=key, sha256=digest.sha256, size=digest.size)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle: BinaryIO = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ObjectMissingError(key) from None
        try:
            position = start
            while end is None or position < end:
                want = READ_CHUNK if end is None else min(READ_CHUNK, end - position)
                chunk = await asyncio.to_thread(os.pread, handle.fileno(), want, position)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            handle.close()

    async def head(self, key: str) -> int:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            raise ObjectMissingError(key) from None

    async def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def close(self) -> None:
        return None

    def sweep_incoming(self, older_than_s: float) -> int:
        """Remove temporary files of uploads that died (a crashed process); returns how many.
        Only old ones: another process may be writing a recent one right now."""
        incoming = self.root / INCOMING
        if not incoming.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in incoming.iterdir():
            with suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
        return removed
