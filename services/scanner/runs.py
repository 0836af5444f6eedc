"""One run of a scan range: its chunks, their progress, and the moment the run is over.

Counters are derived from the chunk rows (sums), never incremented, so a chunk that is processed
twice after a redelivery cannot inflate them; and the run ends exactly when its last chunk row is
marked done, whichever replica does it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.scanner import nodes
from services.scanner.probe import RedfishService
from shared.core import iprange
from shared.core.clock import utcnow
from shared.lifecycle import scan_range as scan_range_lifecycle
from shared.models import ScanChunk, ScanRange


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
        scan_range_lifecycle.began(session, scan_range)
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
    scanned, found, unanswered, pending = (
        await session.exec(
            select(
                func.coalesce(func.sum(ScanChunk.addresses_scanned), 0),
                func.coalesce(func.sum(ScanChunk.nodes_found), 0),
                func.coalesce(func.sum(ScanChunk.addresses_unanswered), 0),
                func.count().filter(col(ScanChunk.done_at).is_(None)),
            ).where(
                col(ScanChunk.scan_range_id) == scan_range.id,
                col(ScanChunk.run) == scan_range.run,
            )
        )
    ).one()
    scan_range.addresses_scanned = int(scanned)
    scan_range.nodes_found = int(found)
    scan_range.addresses_unanswered = int(unanswered)
    return int(pending)


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
    unanswered: int = 0,
    error: str | None = None,
) -> bool:
    """Record a chunk's result and end the run if it was the last; False if already done."""
    await scan_range_lifecycle.lock(session, scan_range_id)
    scan_range = await scan_range_lifecycle.current(session, scan_range_id, run)
    chunk = await get_chunk(session, scan_range_id, run, index)
    if scan_range is None or chunk is None or chunk.done_at is not None:
        return False
    timestamp = utcnow()
    for service in found:
        await nodes.record(session, service, scan_range_id, timestamp)
    chunk.done_at = timestamp
    chunk.error = error
    chunk.addresses_scanned = chunk.address_count
    chunk.nodes_found = len(found)
    chunk.addresses_unanswered = unanswered
    session.add(chunk)
    await session.flush()
    pending = await _refresh_totals(session, scan_range)
    if pending == 0:
        await scan_range_lifecycle.finish(session, scan_range, timestamp)
    session.add(scan_range)
    return True
