"""Artifacts in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, …) through ``obstore``.

A put is a multipart upload fed by the stream; it completes only when the stream ends cleanly,
which is after ``verify`` accepted it — a rejected or broken upload is aborted and leaves no
object (an upload cut short by a crash leaves an incomplete multipart upload: give the bucket a
lifecycle rule that aborts those after a day, see docs/deploy.md). Reads are ranged GETs streamed
in ``READ_CHUNK`` pieces.

Credentials: ``RACKSMITH_ARTIFACT_S3_ACCESS_KEY_ID`` / ``…_SECRET_ACCESS_KEY`` when set (from a
Kubernetes Secret), otherwise the usual AWS chain (``AWS_*`` variables, web identity, instance
profile).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obstore.store import S3Store as ObjectStoreS3

from shared.artifacts.store import (
    READ_CHUNK,
    Measured,
    ObjectMissingError,
    StoredObject,
    Verify,
    new_key,
)
from shared.core.settings import Settings

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

# Parts of a multipart upload: S3 wants at least 5 MiB per part. Two in flight bound an upload's
# memory to a few parts, however large the file.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 2


class S3Store:
    def __init__(self, store: ObjectStoreS3) -> None:
        self._store = store

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        if not settings.artifact_s3_bucket:
            raise ValueError(
                "RACKSMITH_ARTIFACT_S3_BUCKET must be set when RACKSMITH_ARTIFACT_STORE=s3."
            )
        config: S3Config = {"region": settings.artifact_s3_region}
        client: ClientConfig = {}
        if settings.artifact_s3_endpoint:
            config["endpoint"] = settings.artifact_s3_endpoint
            # MinIO and most in-cluster services are addressed by path, not by virtual host.
            config["virtual_hosted_style_request"] = False
            client["allow_http"] = settings.artifact_s3_endpoint.startswith("http://")
        if settings.artifact_s3_access_key_id and settings.artifact_s3_secret_access_key:
            config["access_key_id"] = settings.artifact_s3_access_key_id.get_secret_value()
            config["secret_access_key"] = settings.artifact_s3_secret_access_key.get_secret_value()
        store = ObjectStoreS3(
            settings.artifact_s3_bucket,
            prefix=settings.artifact_s3_prefix.strip("/") or None,
            config=config,
            client_options=client,
        )
        return cls(store)

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_size: int | None = None,
        verify: Verify | None = None,
    ) -> StoredObject:
        key = new_key()
        measured = Measured(chunks, max_size=max_size, verify=verify)
        try:
            await self._store.put_async(
                key,
                aiter(measured),
                use_multipart=True,
                chunk_size=PART_SIZE,
                max_concurrency=PARTS_IN_FLIGHT,
            )
        except Exception as exc:
            # The library reports a failing stream as its own error; callers need ours (which
            # field was wrong, which checksum it had).
            if measured.error is not None and measured.error is not exc:
                raise measured.error from None
            raise
        digest = measured.digest()
        return StoredObject(key=key, sha256=digest.sha256, size=digest.size)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        window: Any = {"offset": start} if end is None else (start, end)
        try:
            result = await self._store.get_async(key, options={"range": window})
        except FileNotFoundError:
            raise ObjectMissingError(key) from None
        # Pieces of at least READ_CHUNK (the library's default gathers 10 MiB per piece, which
        # many concurrent downloads would multiply).
        async for chunk in result.stream(min_chunk_size=READ_CHUNK):
            yield bytes(chunk)

    async def head(self, key: str) -> int:
        try:
            meta = await self._store.head_async(key)
        except FileNotFoundError:
            raise ObjectMissingError(key) from None
        return int(meta["size"])

    async def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            await self._store.delete_async(key)

    async def exists(self, key: str) -> bool:
        try:
            await self._store.head_async(key)
        except FileNotFoundError:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    async def close(self) -> None:
        return None
