"""The fetcher worker's commands: download an artifact from its ``source_url`` into the store.

The download streams from the source into the store while SHA-256 and size are measured; the
store keeps the object only if the declared SHA-256 matched. Outcomes:
- a refused source (4xx, outside the allowed networks, too many redirects), a checksum mismatch
  or a file over the size cap → ``invalid`` with the reason, at once;
- a failing source (connection, 5xx, timeout) → retried with back-off; after
  ``RACKSMITH_COMMAND_MAX_DELIVER`` deliveries → ``invalid`` with the last reason;
- a command for an entry deleted meanwhile, or for an earlier download → nothing (bytes stored
  by it are deleted again).
A killed worker's download is redelivered and starts over (the store never published a partial
object).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.artifacts.sources import SourceRefusedError, download
from shared.artifacts.store import (
    ArtifactRejectedError,
    ObjectMissingError,
    StoredObject,
    expect_sha256,
)
from shared.contracts.commands import ArtifactFetchCommand
from shared.core.log import get_logger
from shared.core.targets import ARTIFACT_SOURCES, TargetPolicy
from shared.lifecycle import artifact as lifecycle
from shared.messaging.consumer import CommandContext, CommandRouter
from shared.messaging.streams import FETCHER

log = get_logger(__name__)

router = CommandRouter(FETCHER)


Change = Callable[[AsyncSession, lifecycle.Entry], None]


async def _record(
    command: ArtifactFetchCommand,
    ctx: CommandContext,
    change: Change,
    stored: StoredObject | None = None,
) -> bool:
    """Apply ``change`` to the entry if this download is still the current one; otherwise
    (deleted meanwhile, or a newer download) delete what it stored and answer False."""
    async with ctx.db.session() as session:
        entry = await lifecycle.current(session, command.artifact_id, command.fetch)
        if entry is not None:
            change(session, entry)
        await session.commit()
    if entry is None and stored is not None:
        await ctx.runtime.artifacts.delete(stored.key)
    return entry is not None


def _invalid(reason: str) -> Change:
    def change(session: AsyncSession, entry: lifecycle.Entry) -> None:
        lifecycle.invalid(session, entry, reason)
        log.warning("artifact.invalid", artifact=entry.artifact_id, reason=reason)

    return change


async def _give_up(command: ArtifactFetchCommand, ctx: CommandContext, exc: BaseException) -> None:
    reason = f"Download failed after {ctx.delivery} attempts: {exc}"
    await _record(command, ctx, _invalid(reason))


@router.command(ArtifactFetchCommand.subject, ArtifactFetchCommand, on_exhausted=_give_up)
async def fetch(command: ArtifactFetchCommand, ctx: CommandContext) -> None:
    async with ctx.db.session() as session:
        entry = await lifecycle.current(session, command.artifact_id, command.fetch)
        if entry is None:
            log.info("artifact.fetch_stale", artifact=command.artifact_id, fetch=command.fetch)
            return
        artifact = entry.artifact
        url, declared, kind = artifact.source_url, artifact.sha256, artifact.kind
        # Nothing is held during the download: it may take an hour.
        await session.commit()
    if url is None:
        await _record(command, ctx, _invalid("The artifact has no source URL."))
        return
    store = ctx.runtime.artifacts
    policy = TargetPolicy.from_settings(ctx.settings, ARTIFACT_SOURCES)
    try:
        async with download(url, policy, ctx.settings.artifact_fetch_timeout_s) as chunks:
            stored = await store.put(
                chunks,
                max_size=lifecycle.size_limit(ctx.settings, kind),
                verify=expect_sha256(declared),
            )
    except (SourceRefusedError, ArtifactRejectedError) as exc:
        await _record(command, ctx, _invalid(str(exc)))
        return
    # Anything else (the source or the store failing) propagates: the router retries.

    if not await _record(command, ctx, lifecycle.verifying, stored):
        return
    # The store said it kept the object; ask it back before anyone is told it is ready.
    try:
        size = await store.head(stored.key)
    except ObjectMissingError:
        size = -1
    if size != stored.size:
        reason = f"The store holds {size} bytes of the {stored.size} written."
        await _record(command, ctx, _invalid(reason))
        await store.delete(stored.key)
        return

    def ready(session: AsyncSession, entry: lifecycle.Entry) -> None:
        lifecycle.ready(session, entry, stored)

    if await _record(command, ctx, ready, stored):
        log.info("artifact.ready", artifact=command.artifact_id, size=stored.size)
