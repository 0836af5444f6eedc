"""One run of a scan range: its chunks, their progress, and the moment the run is over.

Counters are derived from the chunk rows (sums), never incremented, so a chunk that is processed
twice after a redelivery cannot inflate them; and the run ends exactly when its last chunk row is
marked done, whichever replica does it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.scanner import nodes
from services.scanner.probe import RedfishService
from shared.contracts import catalog
from shared.core import iprange
from shared.messaging import outbox
from shared.models import ScanChunk, ScanRange, ScanStatus


def now() -> datetime:
    return datetime.now(UTC)


async def current_range(session: AsyncSession, scan_range_id: int, run: int) -> ScanRange | None:
    """The range if this run is still the one being scanned; stale commands get None."""
    scan_range = await session.get(ScanRange, scan_range_id)
    if scan_range is None or scan_range.run != run or scan_range.status != ScanStatus.scanning:
        return None
    return scan_range


async def create_chunks(session: AsyncSession, scan_range: ScanRange, chunk_size: int) -> list[int]:
    """Create the run's chunk rows (once) and return every chunk index of the run."""
    assert scan_range.id is not None
    existing = set(
        (
            await session.exec(
                select(ScanChunk.index).where(
                    col(ScanChunk.scan_range_id) == scan_range.id,
                    col(ScanChunk.run) == scan_range.run,
                )
            )
        ).all()
    )
    address_range = iprange.build(scan_range.ip_from, scan_range.ip_to)
    indexes = []
    for index, first, count in address_range.chunks(chunk_size):
        indexes.append(index)
        if index not in existing:
            session.add(
                ScanChunk(
                    scan_range_id=scan_range.id,
                    run=scan_range.run,
                    index=index,
                    first_address=str(first),
                    address_count=count,
                )
            )
    if not existing:
        outbox.stage(session, catalog.scan_range_event(scan_range, "started"))
    return indexes


async def get_chunk(
    session: AsyncSession, scan_range_id: int, run: int, index: int
) -> ScanChunk | None:
    return (
        await session.exec(
            select(ScanChunk).where(
                col(ScanChunk.scan_range_id) == scan_range_id,
                col(ScanChunk.run) == run,
                col(ScanChunk.index) == index,
            )
        )
    ).one_or_none()


def chunk_addresses(chunk: ScanChunk) -> list[str]:
    first = int(ipaddress.ip_address(chunk.first_address))
    return [str(ipaddress.ip_address(first + i)) for i in range(chunk.address_count)]


async def _refresh_totals(session: AsyncSession, scan_range: ScanRange) -> int:
    """Recompute the range's counters from its chunks; returns how many chunks are not done."""
    scanned, found, pending = (
        await session.exec(
            select(
                func.coalesce(func.sum(ScanChunk.addresses_scanned), 0),
                func.coalesce(func.sum(ScanChunk.nodes_found), 0),
                func.count().filter(col(ScanChunk.done_at).is_(None)),
            ).where(
                col(ScanChunk.scan_range_id) == scan_range.id,
                col(ScanChunk.run) == scan_range.run,
            )
        )
    ).one()
    scan_range.addresses_scanned = int(scanned)
    scan_range.nodes_found = int(found)
    return int(pending)


async def _lock_range(session: AsyncSession, scan_range_id: int) -> None:
    # Writing the range row first serialises chunk completions of one range: a row lock on
    # PostgreSQL, the database write lock on SQLite. Without it two last chunks finishing
    # together could each see the other as pending and nobody would end the run.
    await session.exec(
        update(ScanRange).where(col(ScanRange.id) == scan_range_id).values(updated_at=now())
    )


async def record_progress(
    session: AsyncSession, scan_range_id: int, run: int, index: int, addresses_scanned: int
) -> None:
    await session.exec(
        update(ScanChunk)
        .where(
            col(ScanChunk.scan_range_id) == scan_range_id,
            col(ScanChunk.run) == run,
            col(ScanChunk.index) == index,
            col(ScanChunk.done_at).is_(None),
        )
        .values(addresses_scanned=addresses_scanned)
    )
    scan_range = await session.get(ScanRange, scan_range_id)
    if scan_range is not None and scan_range.run == run:
        await _refresh_totals(session, scan_range)
        session.add(scan_range)


async def finish_chunk(
    session: AsyncSession,
    scan_range_id: int,
    run: int,
    index: int,
    found: Sequence[RedfishService],
    *,
    error: str | None = None,
) -> bool:
    """Record a chunk's result and end the run if it was the last; False if already done."""
    await _lock_range(session, scan_range_id)
    scan_range = await current_range(session, scan_range_id, run)
    chunk = await get_chunk(session, scan_range_id, run, index)
    if scan_range is None or chunk is None or chunk.done_at is not None:
        return False
    timestamp = now()
    for service in found:
        await nodes.record(session, service, scan_range_id, timestamp)
    chunk.done_at = timestamp
    chunk.error = error
    chunk.addresses_scanned = chunk.address_count
    chunk.nodes_found = len(found)
    session.add(chunk)
    await session.flush()
    pending = await _refresh_totals(session, scan_range)
    if pending == 0:
        await _end_run(session, scan_range, timestamp)
    session.add(scan_range)
    return True


async def _end_run(session: AsyncSession, scan_range: ScanRange, timestamp: datetime) -> None:
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
    else:
        scan_range.status = ScanStatus.ready
        outbox.stage(session, catalog.scan_range_event(scan_range, "completed"))


async def fail_run(session: AsyncSession, scan_range_id: int, run: int, reason: str) -> None:
    await _lock_range(session, scan_range_id)
    scan_range = await current_range(session, scan_range_id, run)
    if scan_range is None:
        return
    scan_range.status = ScanStatus.error
    scan_range.last_error = reason
    scan_range.last_scan_finished_at = now()
    session.add(scan_range)
    outbox.stage(session, catalog.scan_range_event(scan_range, "failed"))
