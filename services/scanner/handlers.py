"""The scanner worker: ``scan.range`` fans a run out into chunk commands so every replica takes
part; ``scan.chunk`` probes one slice of addresses on the range's ports."""

from __future__ import annotations

import asyncio
import time
import weakref
from contextlib import suppress

from services.scanner import runs
from services.scanner.pacing import Pacing
from services.scanner.probe import Prober, ProbeResult
from shared.contracts.commands import ScanChunkCommand, ScanRangeCommand
from shared.core.log import get_logger
from shared.lifecycle import scan_range as scan_range_lifecycle
from shared.messaging.consumer import CommandContext, CommandRouter, WorkerRuntime
from shared.messaging.streams import SCANNER
from shared.observability import metrics

log = get_logger(__name__)

router = CommandRouter(SCANNER)

# One set of probe limits per process (per runtime), shared by every chunk it works on.
_pacings: weakref.WeakKeyDictionary[WorkerRuntime, Pacing] = weakref.WeakKeyDictionary()


def _pacing(ctx: CommandContext) -> Pacing:
    pacing = _pacings.get(ctx.runtime)
    if pacing is None:
        settings = ctx.settings
        pacing = _pacings[ctx.runtime] = Pacing(
            connects=settings.scan_concurrency,
            handshakes=settings.scan_handshake_concurrency,
            retries=settings.scan_retry_concurrency,
        )
    return pacing


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
    results = await _probe_all(cmd, ctx, targets, len(scan_range.ports))
    found = [r.service for r in results if r.service is not None]
    unanswered = sum(1 for r in results if r.outcome == "timeout_after_accept")
    async with ctx.db.session() as session:
        recorded = await runs.finish_chunk(
            session, cmd.scan_range_id, cmd.run, cmd.index, found, unanswered=unanswered
        )
        await session.commit()
    if recorded:
        metrics.scan_chunks("done").inc()
        metrics.SCAN_CHUNK_DURATION.observe(time.perf_counter() - started)
        for result in results:
            metrics.scan_probes(result.outcome).inc()
    log.info("scan.chunk_done", probes=len(targets), found=len(found), unanswered=unanswered)


async def _probe_all(
    cmd: ScanChunkCommand,
    ctx: CommandContext,
    targets: list[tuple[str, int]],
    ports_per_address: int,
) -> list[ProbeResult]:
    """Every target's final outcome: a first pass at the process's adaptive limits, then a
    second pass over the targets that timed out — as nmap retransmits — so a burst the scanner
    or the network could not absorb costs a retry, not a BMC. Those that accepted and then
    timed out are retried at ``scan_retry_concurrency``."""
    settings = ctx.settings
    probed = 0

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

    async with _pacing(ctx).active() as pacing:
        prober = Prober(
            pacing,
            connect_timeout=settings.scan_connect_timeout_s,
            probe_timeout=settings.scan_probe_timeout_s,
        )

        async def first(ip: str, port: int) -> ProbeResult:
            nonlocal probed
            result = await prober.probe(ip, port)
            if not result.timed_out:
                probed += 1
            return result

        async def second(ip: str, port: int, accepted: bool) -> ProbeResult:
            nonlocal probed
            if accepted:
                async with pacing.retries:
                    result = await prober.probe(ip, port)
            else:
                # A silent address costs a connect timeout and nothing of the loop: retried at
                # the (adaptive) connect limit, or a sparse, filtered range would take hours.
                result = await prober.probe(ip, port)
            probed += 1
            return result

        reporter = asyncio.create_task(report_progress())
        try:
            results = await asyncio.gather(*(first(ip, port) for ip, port in targets))
            again = [i for i, result in enumerate(results) if result.timed_out]
            retried = await asyncio.gather(
                *(second(*targets[i], results[i].outcome == "timeout_after_accept") for i in again)
            )
            for i, result in zip(again, retried, strict=True):
                results[i] = result
        finally:
            reporter.cancel()
            with suppress(asyncio.CancelledError):
                await reporter
    if again:
        log.info(
            "scan.second_pass", retried=len(again), answered=sum(1 for r in retried if r.service)
        )
    return results
