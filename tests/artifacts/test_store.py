"""Both artifact stores honour one contract: streamed, measured, atomic puts; ranged reads;
nothing kept of a rejected or broken stream. The S3 store runs against a real S3 server
process (moto's server mode)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.artifacts.filestore import INCOMING, FileStore
from shared.artifacts.s3store import S3Store
from shared.artifacts.store import (
    ArtifactRejectedError,
    ArtifactStore,
    ArtifactTooLargeError,
    ChecksumMismatchError,
    Digest,
    ObjectMissingError,
    expect_sha256,
    open_store,
)
from shared.core.settings import Settings
from tests.artifacts.s3server import S3Server, s3_server

DATA = os.urandom(3 * 1024 * 1024 + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "file":
        yield open_store(Settings(state_dir=tmp_path))
    else:
        server: S3Server = request.getfixturevalue("s3")
        yield open_store(Settings(state_dir=tmp_path, **server.settings()))  # type: ignore[arg-type]


async def pieces(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read_all(store: ArtifactStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.open(key, start, end)])


def stored_keys(store: ArtifactStore, s3: S3Server | None) -> list[str]:
    if isinstance(store, FileStore):
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    assert s3 is not None
    return s3.keys() + s3.pending_uploads()


async def test_put_measures_and_reads_back_by_range(store: ArtifactStore) -> None:
    stored = await store.put(pieces(DATA), max_size=len(DATA), verify=expect_sha256(SHA))
    assert (stored.sha256, stored.size) == (SHA, len(DATA))
    assert await store.exists(stored.key)
    assert await store.head(stored.key) == len(DATA)
    assert await read_all(store, stored.key) == DATA
    assert await read_all(store, stored.key, 1000, 1001) == DATA[1000:1001]
    middle = await read_all(store, stored.key, 1024 * 1024 - 7, 2 * 1024 * 1024 + 3)
    assert middle == DATA[1024 * 1024 - 7 : 2 * 1024 * 1024 + 3]
    assert await read_all(store, stored.key, len(DATA) - 10) == DATA[-10:]
    chunks = [len(c) async for c in store.open(stored.key)]
    assert max(chunks) <= 1024 * 1024  # streamed in pieces, never the whole object

    await store.delete(stored.key)
    assert not await store.exists(stored.key)
    await store.delete(stored.key)  # deleting what is gone is fine
    with pytest.raises(ObjectMissingError):
        await store.head(stored.key)
    with pytest.raises(ObjectMissingError):
        await read_all(store, stored.key)


@pytest.mark.parametrize(
    ("max_size", "declared", "error"),
    [
        (len(DATA), "0" * 64, ChecksumMismatchError),
        (len(DATA) - 1, None, ArtifactTooLargeError),
    ],
)
async def test_rejected_streams_leave_nothing(
    request: pytest.FixtureRequest,
    store: ArtifactStore,
    max_size: int,
    declared: str | None,
    error: type[ArtifactRejectedError],
) -> None:
    s3 = request.getfixturevalue("s3") if isinstance(store, S3Store) else None
    before = stored_keys(store, s3)
    with pytest.raises(error) as caught:
        await store.put(pieces(DATA), max_size=max_size, verify=expect_sha256(declared))
    assert caught.value.field == ("sha256" if declared else "file")
    assert stored_keys(store, s3) == before


async def test_a_failing_verify_or_source_keeps_nothing(
    request: pytest.FixtureRequest, store: ArtifactStore
) -> None:
    s3 = request.getfixturevalue("s3") if isinstance(store, S3Store) else None
    before = stored_keys(store, s3)
    seen: list[Digest] = []

    def refuse(digest: Digest) -> None:
        seen.append(digest)
        raise ArtifactRejectedError("name", "This field is required.")

    with pytest.raises(ArtifactRejectedError, match="required"):
        await store.put(pieces(DATA), verify=refuse)
    assert seen == [Digest(SHA, len(DATA))]

    async def broken() -> AsyncIterator[bytes]:
        yield DATA[: 6 * 1024 * 1024]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(broken())
    assert stored_keys(store, s3) == before


async def test_file_store_files_are_private(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "artifacts")
    stored = await store.put(pieces(b"firmware"))
    assert stat.S_IMODE((tmp_path / "artifacts").stat().st_mode) == 0o700
    path = store.local_path(stored.key)
    assert path is not None and path.read_bytes() == b"firmware"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="Invalid artifact key"):
        store.local_path("../secret_key.key")


async def test_file_store_sweeps_abandoned_uploads(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.put(pieces(b"x"))
    leftover = tmp_path / INCOMING / "crashed-upload"
    leftover.write_bytes(b"partial")
    assert store.sweep_incoming(older_than_s=3600) == 0
    os.utime(leftover, (0, 0))
    assert store.sweep_incoming(older_than_s=3600) == 1
    assert not leftover.exists()
