"""``/api/node_discovery/scan_range/`` and ``run_scan/``: where BMCs live, and sweeping it.

Superuser-only. Starting a scan is a command for the scanner workers; the API only flips the range
to ``scanning`` (atomically, so a range is never started twice) and publishes the command in the
same transaction — if the broker does not acknowledge, nothing changed and the answer is 503.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlmodel import col, select

from services.api.broker import BROKER_UNAVAILABLE
from services.api.deps import SessionDep, StateDep, get_superuser
from services.api.errors import APIError, FieldErrors, documented
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404, resolve_ids
from shared.core import iprange
from shared.core.settings import Settings
from shared.lifecycle import scan_range as scan_range_lifecycle
from shared.models import ScanRange, ScanStatus
from shared.models.discovery import (
    RunScan,
    RunScanAccepted,
    ScanRangeCreate,
    ScanRangePublic,
    ScanRangeUpdate,
)

router = APIRouter(
    prefix="/api/node_discovery",
    tags=["node discovery"],
    dependencies=[Depends(get_superuser)],
)

LIST_SPEC = ListSpec(
    pk=col(ScanRange.id),
    search=(
        col(ScanRange.name),
        col(ScanRange.ip_from),
        col(ScanRange.ip_to),
        col(ScanRange.status),
    ),
    public=ScanRangePublic,
    ordering={
        "id": col(ScanRange.id),
        "name": col(ScanRange.name),
        "status": col(ScanRange.status),
        "nodes_found": col(ScanRange.nodes_found),
        "last_scan_started_at": col(ScanRange.last_scan_started_at),
        "last_scan_finished_at": col(ScanRange.last_scan_finished_at),
        "created_at": col(ScanRange.created_at),
    },
)
ScanRangeListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]

BUSY = documented(409, "The range is being scanned")


def _validated(
    settings: Settings, *, ip_from: str | None, ip_to: str | None, cidr: str | None
) -> iprange.AddressRange:
    """The range from either endpoints or a CIDR, within the configured limits; 400 otherwise."""
    try:
        if cidr is not None:
            if ip_from is not None or ip_to is not None:
                raise iprange.RangeError("cidr", "Give either cidr or ip_from/ip_to, not both.")
            address_range = iprange.from_cidr(cidr)
        else:
            missing = {
                f: ["This field is required."]
                for f, v in (("ip_from", ip_from), ("ip_to", ip_to))
                if v is None
            }
            if missing:
                raise FieldErrors(missing)
            assert ip_from is not None and ip_to is not None
            address_range = iprange.build(ip_from, ip_to)
        iprange.check_limits(
            address_range,
            max_addresses=settings.scan_max_addresses,
            allowed=iprange.parse_networks(settings.scan_allowed_networks.split(",")),
            fields=("cidr", "cidr") if cidr is not None else ("ip_from", "ip_to"),
        )
    except iprange.RangeError as exc:
        raise FieldErrors.single(exc.field, exc.message) from None
    return address_range


def _apply_range(scan_range: ScanRange, address_range: iprange.AddressRange) -> None:
    scan_range.ip_from = str(address_range.first)
    scan_range.ip_to = str(address_range.last)
    scan_range.addresses_total = address_range.size


def _refuse_while_scanning(scan_range: ScanRange) -> None:
    if scan_range.status == ScanStatus.scanning:
        raise APIError(409, "The scan range is being scanned; wait until it is not scanning.")


@router.get("/scan_range/", summary="List scan ranges")
async def list_scan_ranges(session: SessionDep, query: ScanRangeListQuery) -> Page[ScanRangePublic]:
    return await paginate(session, select(ScanRange), query, ScanRangePublic.of)


@router.post("/scan_range/", status_code=201, summary="Create a scan range")
async def create_scan_range(
    body: ScanRangeCreate, session: SessionDep, state: StateDep
) -> ScanRangePublic:
    address_range = _validated(
        state.settings, ip_from=body.ip_from, ip_to=body.ip_to, cidr=body.cidr
    )
    scan_range = ScanRange(name=body.name, ip_from="", ip_to="", ports=sorted(set(body.ports)))
    _apply_range(scan_range, address_range)
    session.add(scan_range)
    await session.commit()
    return ScanRangePublic.of(scan_range)


@router.get("/scan_range/{scan_range_id}/", summary="Retrieve a scan range (poll its status)")
async def read_scan_range(scan_range_id: int, session: SessionDep) -> ScanRangePublic:
    return ScanRangePublic.of(await get_or_404(session, ScanRange, scan_range_id))


async def _update(
    session: SessionDep, settings: Settings, scan_range_id: int, changes: ScanRangeUpdate
) -> ScanRangePublic:
    scan_range = await get_or_404(session, ScanRange, scan_range_id)
    _refuse_while_scanning(scan_range)
    if changes.cidr is not None or changes.ip_from is not None or changes.ip_to is not None:
        if changes.cidr is not None:
            address_range = _validated(
                settings, ip_from=changes.ip_from, ip_to=changes.ip_to, cidr=changes.cidr
            )
        else:
            address_range = _validated(
                settings,
                ip_from=changes.ip_from or scan_range.ip_from,
                ip_to=changes.ip_to or scan_range.ip_to,
                cidr=None,
            )
        _apply_range(scan_range, address_range)
    if changes.name is not None:
        scan_range.name = changes.name
    if changes.ports is not None:
        scan_range.ports = sorted(set(changes.ports))
    scan_range.updated_at = datetime.now(UTC)
    session.add(scan_range)
    await session.commit()
    return ScanRangePublic.of(scan_range)


@router.put("/scan_range/{scan_range_id}/", summary="Replace a scan range", responses=BUSY)
async def replace_scan_range(
    scan_range_id: int, body: ScanRangeCreate, session: SessionDep, state: StateDep
) -> ScanRangePublic:
    changes = ScanRangeUpdate(**body.model_dump(exclude_unset=True))
    return await _update(session, state.settings, scan_range_id, changes)


@router.patch(
    "/scan_range/{scan_range_id}/", summary="Update some fields of a scan range", responses=BUSY
)
async def update_scan_range(
    scan_range_id: int, body: ScanRangeUpdate, session: SessionDep, state: StateDep
) -> ScanRangePublic:
    return await _update(session, state.settings, scan_range_id, body)


@router.delete(
    "/scan_range/{scan_range_id}/", status_code=204, summary="Delete a scan range", responses=BUSY
)
async def delete_scan_range(scan_range_id: int, session: SessionDep) -> Response:
    scan_range = await get_or_404(session, ScanRange, scan_range_id)
    _refuse_while_scanning(scan_range)
    await session.delete(scan_range)
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/run_scan/",
    status_code=202,
    summary="Start discovery on scan ranges",
    responses=BROKER_UNAVAILABLE,
)
async def run_scan(body: RunScan, session: SessionDep, state: StateDep) -> RunScanAccepted:
    ranges = await resolve_ids(session, ScanRange, body.scan_ranges, "scan_ranges")
    started = await scan_range_lifecycle.start(session, state.runtime, ranges)
    already = [r.id for r in ranges if r.id is not None and r.id not in started]
    # One statement re-reads every range (their runs and statuses as started).
    await session.exec(
        select(ScanRange)
        .where(col(ScanRange.id).in_([r.id for r in ranges]))
        .execution_options(populate_existing=True)
    )
    return RunScanAccepted(
        started=started,
        already_scanning=already,
        scan_ranges=[ScanRangePublic.of(r) for r in ranges],
    )
