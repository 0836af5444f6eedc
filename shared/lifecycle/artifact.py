"""A catalog entry's bytes: added (uploaded → ``ready`` at once, or from a source URL →
``uploading``), then, for downloads, ``verifying`` → ``ready`` or ``invalid``; deleted.

The events are the owning entry's (``firmware.*``, ``os_image.*``): subscribers care about the
catalog, not the storage row. Every status change bumps the entry's ``revision``, its events'
version. A download is numbered by the artifact's ``fetch`` counter; its command carries the
number, so a command of an earlier download, or for a deleted entry, is stale.
"""

from __future__ import annotations

from typing import cast

from sqlmodel import col, select, update
from sqlmodel import delete as delete_rows
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.artifacts.store import StoredObject
from shared.contracts import catalog
from shared.contracts.commands import ArtifactFetchCommand
from shared.contracts.events import CloudEvent
from shared.core.clock import utcnow
from shared.core.settings import Settings
from shared.lifecycle.starting import commit_and_queue
from shared.messaging import outbox
from shared.models import Artifact, ArtifactKind, ArtifactStatus, FirmwareBinary, OSImage
from shared.platform.runtime import Runtime

Entry = FirmwareBinary | OSImage
ENTRY_MODELS: dict[ArtifactKind, type[FirmwareBinary] | type[OSImage]] = {
    ArtifactKind.firmware: FirmwareBinary,
    ArtifactKind.os_image: OSImage,
}


def size_limit(settings: Settings, kind: ArtifactKind) -> int:
    """The largest artifact of ``kind`` accepted (``RACKSMITH_FIRMWARE_MAX_BYTES`` / …)."""
    if kind == ArtifactKind.firmware:
        return settings.firmware_max_bytes
    return settings.os_image_max_bytes


def entry_event(entry: Entry, change: str, **extra: object) -> CloudEvent:
    if isinstance(entry, FirmwareBinary):
        return catalog.firmware_event(entry, change, **extra)
    return catalog.os_image_event(entry, change, **extra)


async def added_uploaded(session: AsyncSession, entry: Entry) -> None:
    """A new entry whose bytes arrived with the request (``ready``): ``added`` and ``ready``,
    so whoever waits for usable binaries listens to ``ready`` alone, however they came."""
    session.add(entry)
    await session.flush()
    outbox.stage(session, entry_event(entry, "added"))
    outbox.stage(session, entry_event(entry, "ready"))


async def add_from_source(session: AsyncSession, runtime: Runtime, entry: Entry) -> None:
    """Save a new entry whose bytes are still at its ``source_url`` and queue the download;
    if the broker refuses, the entry is removed again (503)."""
    artifact = entry.artifact
    artifact.status = ArtifactStatus.uploading
    artifact.fetch = 1
    session.add(entry)
    await session.flush()
    added = entry_event(entry, "added")
    outbox.stage(session, added)
    assert artifact.id is not None
    entry_model, entry_id, artifact_id = type(entry), entry.id, artifact.id

    async def revert(s: AsyncSession) -> None:
        await s.exec(delete_rows(entry_model).where(col(entry_model.id) == entry_id))
        await s.exec(delete_rows(Artifact).where(col(Artifact.id) == artifact_id))

    command = ArtifactFetchCommand(artifact_id=artifact_id, fetch=artifact.fetch)
    await commit_and_queue(session, runtime, command, revert=revert, started=added)


async def current(session: AsyncSession, artifact_id: int, fetch: int) -> Entry | None:
    """The entry whose download ``fetch`` is still in progress, its row locked; else None."""
    # Writing the row first takes its lock, so two deliveries cannot both record an outcome.
    await session.exec(
        update(Artifact).where(col(Artifact.id) == artifact_id).values(fetch=Artifact.fetch)
    )
    artifact = await session.get(Artifact, artifact_id)
    if artifact is None or artifact.fetch != fetch:
        return None
    if artifact.status not in (ArtifactStatus.uploading, ArtifactStatus.verifying):
        return None
    model = ENTRY_MODELS[artifact.kind]
    found = await session.exec(select(model).where(col(model.artifact_id) == artifact_id))
    return cast(Entry | None, found.one_or_none())


def _changed(session: AsyncSession, entry: Entry) -> None:
    now = utcnow()
    entry.artifact.updated_at = now
    entry.updated_at = now
    entry.revision += 1
    session.add(entry)


def updated(session: AsyncSession, entry: Entry, changed: list[str]) -> None:
    """Descriptive fields changed (already set on ``entry``)."""
    _changed(session, entry)
    outbox.stage(session, entry_event(entry, "updated", changed=changed))


def verifying(session: AsyncSession, entry: Entry) -> None:
    entry.artifact.status = ArtifactStatus.verifying
    _changed(session, entry)


def ready(session: AsyncSession, entry: Entry, stored: StoredObject) -> None:
    artifact = entry.artifact
    artifact.storage_key = stored.key
    artifact.sha256 = stored.sha256
    artifact.size = stored.size
    artifact.status = ArtifactStatus.ready
    artifact.status_reason = None
    _changed(session, entry)
    outbox.stage(session, entry_event(entry, "ready"))


def invalid(session: AsyncSession, entry: Entry, reason: str) -> None:
    artifact = entry.artifact
    artifact.status = ArtifactStatus.invalid
    artifact.status_reason = reason[:2000]
    _changed(session, entry)
    outbox.stage(session, entry_event(entry, "invalid"))


async def delete(session: AsyncSession, entry: Entry) -> str | None:
    """Remove the entry and its artifact row (grants go with it); returns the storage key whose
    object the caller deletes after the commit — bytes must outlive a transaction that fails."""
    outbox.stage(session, entry_event(entry, "deleted"))
    artifact = entry.artifact
    await session.delete(entry)
    await session.flush()
    await session.delete(artifact)
    return artifact.storage_key
