"""One interface for the bytes of artifacts, whatever holds them.

A store keeps opaque objects under keys it chooses. ``put`` consumes a stream and measures it
(SHA-256, size) as the bytes pass; the caller's ``verify`` runs when the stream has ended and
before the object becomes visible, so a rejected upload (a declared checksum that does not match,
a missing form field) leaves nothing behind — in either implementation an object is published
atomically or not at all. Reading is by byte range and streamed, so neither serving nor copying
ever holds a whole artifact in memory.

Two implementations: the local filesystem (``filestore.FileStore``, the default, under the state
dir) and any S3-compatible service (``s3store.S3Store``), chosen by ``RACKSMITH_ARTIFACT_STORE``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.core.settings import Settings

# What a reader yields at most at once: small enough that many concurrent downloads stay cheap,
# large enough that per-chunk overhead does not dominate.
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Digest:
    """What a stream turned out to be, handed to ``verify`` before the object is kept."""

    sha256: str
    size: int


Verify = Callable[[Digest], None]


class ArtifactRejectedError(ValueError):
    """The stream is not acceptable; nothing was kept. ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ArtifactTooLargeError(ArtifactRejectedError):
    def __init__(self, field: str, limit: int) -> None:
        super().__init__(
            field, f"Ensure this file is at most {format_size(limit)} ({limit} bytes)."
        )
        self.limit = limit


class ChecksumMismatchError(ArtifactRejectedError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__("sha256", f"The file's SHA-256 is {actual}, not the declared {expected}.")
        self.expected = expected
        self.actual = actual


class ObjectMissingError(LookupError):
    """No object under this key (deleted, or never completed)."""


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def expect_sha256(expected: str | None) -> Verify:
    """A ``verify`` that refuses a stream whose SHA-256 differs from ``expected`` (if any)."""

    def verify(digest: Digest) -> None:
        if expected and expected.lower() != digest.sha256:
            raise ChecksumMismatchError(expected.lower(), digest.sha256)

    return verify


def new_key() -> str:
    """A fresh object key: random, so two uploads never race for one name."""
    return uuid.uuid4().hex


class Measured:
    """Passes a stream through, hashing and counting it; refuses past ``max_size``; runs
    ``verify`` at the end of the stream, before the consumer sees the end — so a store that
    publishes only on a clean end publishes nothing that fails it.

    The exception it raised is kept in ``error``: a store whose client library wraps errors
    from the stream (obstore does) re-raises the original.
    """

    def __init__(
        self,
        source: AsyncIterable[bytes],
        *,
        max_size: int | None,
        verify: Verify | None,
        field: str = "file",
    ) -> None:
        self._source = source
        self._max_size = max_size
        self._verify = verify
        self._field = field
        self._hash = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def digest(self) -> Digest:
        return Digest(self._hash.hexdigest(), self.size)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._source:
                if not chunk:
                    continue
                self.size += len(chunk)
                if self._max_size is not None and self.size > self._max_size:
                    raise ArtifactTooLargeError(self._field, self._max_size)
                self._hash.update(chunk)
                yield chunk
            if self._verify is not None:
                self._verify(self.digest())
        except BaseException as exc:
            self.error = exc
            raise


class ArtifactStore(Protocol):
    """Where artifact bytes live. Keys are the store's; callers keep them (the ``artifact`` row)."""

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_size: int | None = None,
        verify: Verify | None = None,
    ) -> StoredObject:
        """Store a stream under a new key; atomically, and only if ``verify`` accepts it.
        Raises ``ArtifactRejectedError`` (or whatever ``verify`` or the stream raised)."""
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive; None: to the end), in chunks of at most
        ``READ_CHUNK``. Raises ``ObjectMissingError`` on first iteration if the key is gone."""
        ...

    async def head(self, key: str) -> int:
        """The object's size; ``ObjectMissingError`` if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...

    async def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """The object as a local file, when it is one: the artifact server then lets the kernel
        send it (sendfile) instead of copying it through Python. None for remote stores."""
        ...

    async def close(self) -> None: ...


def open_store(settings: Settings) -> ArtifactStore:
    """The store ``RACKSMITH_ARTIFACT_STORE`` selects."""
    if settings.artifact_store == "s3":
        from shared.artifacts.s3store import S3Store

        return S3Store.from_settings(settings)
    from shared.artifacts.filestore import FileStore

    return FileStore(settings.effective_artifact_dir)
