"""The scanner worker: ``scan.range`` fans a run out into chunk commands so every replica takes
part; ``scan.chunk`` probes one slice of addresses on the range's ports."""

from __future__ import annotations

import asyncio
import time
import weakref
from contextlib import suppress

from services.scanner import runs
from services.scanner.probe import Prober, RedfishService
from shared.contracts.commands import ScanChunkCommand, ScanRangeCommand
from shared.core.log import get_logger
from shared.lifecycle import scan_range as scan_range_lifecycle
from shared.messaging.consumer import CommandContext, CommandRouter, WorkerRuntime
from shared.messaging.streams import SCANNER
from shared.observability import metrics

log = get_logger(__name__)

router = CommandRouter(SCANNER)

# One probe limit per process (per runtime), shared by every chunk the process works on.
_probe_limits: weakref.WeakKeyDictionary[WorkerRuntime, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _probe_limit(ctx: CommandContext) -> asyncio.Semaphore:
    limit = _probe_limits.get(ctx.runtime)
    if limit is None:
        limit = _probe_limits[ctx.runtime] = asyncio.Semaphore(ctx.settings.scan_concurrency)
    return limit


async def range_failed(cmd: ScanRangeCommand, ctx: CommandContext, error: BaseException) -> None:
    async with ctx.db.session() as session:
        reason = f"could not start the scan: {error}"
        await scan_range_lifecycle.fail(session, cmd.scan_range_id, cmd.run, reason)
        await session.commit()


@router.command(ScanRangeCommand.subject, ScanRangeCommand, on_exhausted=range_failed)
async def expand_range(cmd: ScanRangeCommand, ctx: CommandContext) -> None:
    async with ctx.db.session() as session:
        scan_range = await scan_range_lifecycle.current(session, cmd.scan_range_id, cmd.run)
        if scan_range is None:
            log.info("scan.stale_command")
            return
        indexes = await runs.create_chunks(session, scan_range, ctx.settings.scan_chunk_size)
        await session.commit()
    # Re-publishing after a redelivery is harmless: chunk ids are deterministic, so JetStream
    # drops the copies.
    for index in indexes:
        await ctx.publisher.command(
            ScanChunkCommand(scan_range_id=cmd.scan_range_id, run=cmd.run, index=index)
        )
    log.info("scan.started", chunks=len(indexes))


async def chunk_failed(cmd: ScanChunkCommand, ctx: CommandContext, error: BaseException) -> None:
    async with ctx.db.session() as session:
        recorded = await runs.finish_chunk(
            session, cmd.scan_range_id, cmd.run, cmd.index, [], error=f"chunk {cmd.index}: {error}"
        )
        await session.commit()
    if recorded:
        metrics.scan_chunks("failed").inc()


@router.command(ScanChunkCommand.subject, ScanChunkCommand, on_exhausted=chunk_failed)
async def scan_chunk(cmd: ScanChunkCommand, ctx: CommandContext) -> None:
    async with ctx.db.session() as session:
        scan_range = await scan_range_lifecycle.current(session, cmd.scan_range_id, cmd.run)
        chunk = await runs.get_chunk(session, cmd.scan_range_id, cmd.run, cmd.index)
    if scan_range is None or chunk is None or chunk.done_at is not None:
        return  # stale, or done by an earlier delivery (the router relays what it left behind)
    started = time.perf_counter()
    targets = [(ip, port) for ip in runs.chunk_addresses(chunk) for port in scan_range.ports]
    found = await _probe_all(cmd, ctx, targets, len(scan_range.ports))
    async with ctx.db.session() as session:
        recorded = await runs.finish_chunk(session, cmd.scan_range_id, cmd.run, cmd.index, found)
        await session.commit()
    if recorded:
        metrics.scan_chunks("done").inc()
        metrics.SCAN_CHUNK_DURATION.observe(time.perf_counter() - started)
    log.info("scan.chunk_done", probes=len(targets), found=len(found))


async def _probe_all(
    cmd: ScanChunkCommand,
    ctx: CommandContext,
    targets: list[tuple[str, int]],
    ports_per_address: int,
) -> list[RedfishService]:
    settings = ctx.settings
    limit = _probe_limit(ctx)
    probed = 0

    async def probe(prober: Prober, ip: str, port: int) -> RedfishService | None:
        nonlocal probed
        async with limit:
            result = await prober.probe(ip, port)
        probed += 1
        return result

    async def report_progress() -> None:
        # Throttled: one small write per interval per chunk, however fast probes complete.
        while True:
            await asyncio.sleep(settings.scan_progress_interval_s)
            try:
                async with ctx.db.session() as session:
                    await runs.record_progress(
                        session, cmd.scan_range_id, cmd.run, cmd.index, probed // ports_per_address
                    )
                    await session.commit()
            except Exception as exc:  # progress is best-effort; the result is what counts
                log.warning("scan.progress_failed", error=str(exc))

    async with Prober(
        connect_timeout=settings.scan_connect_timeout_s,
        probe_timeout=settings.scan_probe_timeout_s,
    ) as prober:
        reporter = asyncio.create_task(report_progress())
        try:
            results = await asyncio.gather(*(probe(prober, ip, port) for ip, port in targets))
        finally:
            reporter.cancel()
            with suppress(asyncio.CancelledError):
                await reporter
    return [r for r in results if r is not None]
