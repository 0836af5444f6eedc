"""A scan range's runs: ``ready``/``error`` → ``scanning`` → ``ready`` or ``error``.

Every run_scan bumps ``run``; chunk rows and commands carry it, so a command of an earlier run is
recognised as stale and ignored. The scanner's chunk bookkeeping (``services/scanner/runs.py``)
ends a run through ``finish`` when its last chunk is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import catalog
from shared.contracts.commands import ScanRangeCommand
from shared.core.clock import as_utc, utcnow
from shared.lifecycle.starting import commit_and_queue
from shared.messaging import outbox
from shared.models import ScanChunk, ScanRange, ScanStatus
from shared.observability import metrics
from shared.platform.runtime import Runtime

# What a start overwrites, put back if the broker refuses the command.
_STARTED_FIELDS = (
    "status",
    "last_error",
    "last_scan_started_at",
    "last_scan_finished_at",
    "addresses_scanned",
    "nodes_found",
    "addresses_unanswered",
    "last_warning",
)


async def start(
    session: AsyncSession, runtime: Runtime, scan_ranges: Sequence[ScanRange]
) -> list[int]:
    """Start one run of each range not already scanning; the ids started.

    One transaction and one pipelined publish for all of them. If the broker refuses, every
    range is put back as it was and ``BrokerUnavailableError`` is raised.
    """
    previous = {r.id: {name: getattr(r, name) for name in _STARTED_FIELDS} for r in scan_ranges}
    ids = [r.id for r in scan_ranges if r.id is not None]
    now = utcnow()
    # Conditional update: of two concurrent run_scan calls exactly one flips each range.
    flipped = await session.exec(
        update(ScanRange)
        .where(col(ScanRange.id).in_(ids), col(ScanRange.status) != ScanStatus.scanning)
        .values(
            status=ScanStatus.scanning,
            run=ScanRange.run + 1,
            addresses_scanned=0,
            nodes_found=0,
            addresses_unanswered=0,
            last_error=None,
            last_warning=None,
            last_scan_started_at=now,
            last_scan_finished_at=None,
            updated_at=now,
        )
        .returning(col(ScanRange.id), col(ScanRange.run))
        .execution_options(synchronize_session=False)
    )
    runs = {scan_range_id: run for scan_range_id, run in flipped.all()}
    if not runs:
        return []

    async def revert(s: AsyncSession) -> None:
        for scan_range_id, run in runs.items():
            await s.exec(
                update(ScanRange)
                .where(col(ScanRange.id) == scan_range_id, col(ScanRange.run) == run)
                .values(**previous[scan_range_id])
            )

    commands = [ScanRangeCommand(scan_range_id=i, run=run) for i, run in runs.items()]
    await commit_and_queue(session, runtime, commands, revert=revert)
    return [i for i in ids if i in runs]


async def current(session: AsyncSession, scan_range_id: int, run: int) -> ScanRange | None:
    """The range if this run is still the one being scanned; stale commands get None."""
    scan_range = await session.get(ScanRange, scan_range_id)
    if scan_range is None or scan_range.run != run or scan_range.status != ScanStatus.scanning:
        return None
    return scan_range


def began(session: AsyncSession, scan_range: ScanRange) -> None:
    """The scanner split the run into chunks: the run is under way."""
    outbox.stage(session, catalog.scan_range_event(scan_range, "started"))


async def lock(session: AsyncSession, scan_range_id: int) -> None:
    """Serialise the run's completions: whoever ends a run holds this first.

    Writing the range row takes a row lock on PostgreSQL and the write lock on SQLite. Without
    it two last chunks finishing together could each see the other as pending and nobody would
    end the run.
    """
    await session.exec(
        update(ScanRange).where(col(ScanRange.id) == scan_range_id).values(updated_at=utcnow())
    )


async def finish(session: AsyncSession, scan_range: ScanRange, timestamp: datetime) -> None:
    """End the run whose chunks are all done: ``ready``, or ``error`` if a chunk gave up.

    A run whose probes could not all get an answer ends ``ready`` with ``last_warning`` saying
    how many addresses may hide a BMC, never as if it had seen everything.
    """
    errors = (
        await session.exec(
            select(ScanChunk.error).where(
                col(ScanChunk.scan_range_id) == scan_range.id,
                col(ScanChunk.run) == scan_range.run,
                col(ScanChunk.error).is_not(None),
            )
        )
    ).all()
    scan_range.last_scan_finished_at = timestamp
    if errors:
        scan_range.status = ScanStatus.error
        scan_range.last_error = f"{len(errors)} chunk(s) failed; first: {errors[0]}"
        outbox.stage(session, catalog.scan_range_event(scan_range, "failed"))
        _count_run(session, scan_range, "failed")
    else:
        scan_range.status = ScanStatus.ready
        if scan_range.addresses_unanswered:
            scan_range.last_warning = (
                f"{scan_range.addresses_unanswered} address(es) accepted a TCP connection but "
                "never answered the Redfish probe, even on a second try: BMCs among them are "
                "missing from this run"
            )
        outbox.stage(session, catalog.scan_range_event(scan_range, "completed"))
        _count_run(session, scan_range, "completed")
    session.add(scan_range)


async def fail(session: AsyncSession, scan_range_id: int, run: int, reason: str) -> bool:
    """End the run in ``error`` with ``reason``; False if the run is over or superseded."""
    await lock(session, scan_range_id)
    scan_range = await current(session, scan_range_id, run)
    if scan_range is None:
        return False
    scan_range.status = ScanStatus.error
    scan_range.last_error = reason
    scan_range.last_scan_finished_at = utcnow()
    session.add(scan_range)
    outbox.stage(session, catalog.scan_range_event(scan_range, "failed"))
    _count_run(session, scan_range, "failed")
    return True


def _count_run(session: AsyncSession, scan_range: ScanRange, outcome: str) -> None:
    """Count the run's end and its duration once the transaction ending it commits."""
    started, finished = scan_range.last_scan_started_at, scan_range.last_scan_finished_at

    def record() -> None:
        metrics.scan_runs(outcome).inc()
        if started is not None and finished is not None:
            elapsed = as_utc(finished) - as_utc(started)
            metrics.SCAN_RUN_DURATION.observe(max(0.0, elapsed.total_seconds()))

    metrics.on_commit(session, record)
