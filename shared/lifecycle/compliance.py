"""Firmware compliance: how each server stands against the baselines that apply to it.

A baseline applies to a server when the server fits its scopes (manufacturer, models, pool with
its sub-pools) and at least one of its binaries fits the server (the binary's own manufacturer
and models). Each binary that fits is compared with the server's running firmware: the
inventory entries in the ``active`` slot that the binary's matching rules select (`matches`).
A component is ``compliant`` only when the entry reports exactly the binary's version — the
string the BMC reports after the update; otherwise ``upgrade``/``downgrade`` when the version
scheme orders them (`shared.bmc.versions`), ``unknown`` when it cannot, and ``missing`` when no
running entry matches.

Reports are computed from the current inventory when asked. The status per (server, baseline)
is also kept, and `recompute` — run when a server's inventory changes and when a baseline
changes — stages ``server.firmware_compliance_changed`` for each status that changed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bmc import versions
from shared.contracts import catalog
from shared.core.clock import utcnow
from shared.messaging import outbox
from shared.models import FirmwareBinary, FirmwareComponent, Pool, Server
from shared.models.baselines import (
    ComponentCompliance,
    ComponentStatus,
    FirmwareBaseline,
    FirmwareBaselineBinary,
    FirmwareCompliance,
    ServerStatus,
)
from shared.models.firmware import ApplyRequires, FirmwareType
from shared.redfish.firmware_identity import Slot, is_bios, is_bmc

_REBOOTS = frozenset({ApplyRequires.host_reboot, ApplyRequires.ac_cycle})


@dataclass(frozen=True)
class Baseline:
    """A baseline with its binaries (in the order it names them) and the pools it covers."""

    row: FirmwareBaseline
    binaries: tuple[FirmwareBinary, ...]
    # None: every pool (and no pool).
    pools: frozenset[int] | None

    @property
    def id(self) -> int:
        assert self.row.id is not None
        return self.row.id


@dataclass(frozen=True)
class Assessment:
    baseline: Baseline
    status: ServerStatus
    components: list[ComponentCompliance]


def _same_manufacturer(wanted: str, actual: str | None) -> bool:
    """Empty ``wanted`` fits anything; otherwise equal ignoring case, or the first word(s) of
    the server's (`Dell` fits `Dell Inc.`)."""
    if not wanted:
        return True
    if actual is None:
        return False
    want, have = wanted.casefold().strip(), actual.casefold().strip()
    return have == want or have.startswith(want + " ")


def _fits(manufacturer: str, models: Sequence[str], server: Server) -> bool:
    if not _same_manufacturer(manufacturer, server.manufacturer):
        return False
    if not models:
        return True
    model = (server.model or "").casefold().strip()
    return any(m.casefold().strip() == model for m in models)


def matches(binary: FirmwareBinary, entry: FirmwareComponent) -> bool:
    """Whether the binary updates the component this inventory entry describes: by SoftwareId,
    HPE device class or target GUIDs, or name pattern; a binary without any rule matches the
    BIOS (BIOS binaries) or the BMC (BMC binaries)."""
    if entry.software_id and entry.software_id.casefold() in {
        s.casefold() for s in binary.software_ids
    }:
        return True
    if entry.device_class and entry.device_class.casefold() in {
        d.casefold() for d in binary.device_classes
    }:
        return True
    if {t.casefold() for t in entry.targets} & {g.casefold() for g in binary.target_guids}:
        return True
    pattern = binary.name_pattern.casefold()
    if pattern and entry.name and fnmatch.fnmatchcase(entry.name.casefold(), pattern):
        return True
    rules = (binary.software_ids, binary.device_classes, binary.target_guids, binary.name_pattern)
    if any(rules):
        return False
    identity = (entry.component_id, entry.name, entry.device_class, entry.related_items)
    if binary.firmware_type == FirmwareType.BIOS:
        return is_bios(*identity)
    if binary.firmware_type == FirmwareType.BMC:
        return is_bmc(*identity)
    return False


def _status(current: str | None, target: str) -> ComponentStatus:
    if current is None:
        return ComponentStatus.unknown
    order = versions.compare(current, target)
    if order == 0:
        return ComponentStatus.compliant
    if order is None:
        return ComponentStatus.unknown
    return ComponentStatus.upgrade if order < 0 else ComponentStatus.downgrade


def _row(
    binary: FirmwareBinary, entry: FirmwareComponent | None, status: ComponentStatus
) -> ComponentCompliance:
    assert binary.id is not None
    return ComponentCompliance(
        firmware=binary.id,
        firmware_type=binary.firmware_type,
        component=entry.name if entry else None,
        odata_id=entry.odata_id if entry else None,
        current_version=entry.version if entry else None,
        baseline_version=binary.version,
        status=status,
        reboot_required=status != ComponentStatus.compliant and binary.apply_requires in _REBOOTS,
    )


def applies(baseline: Baseline, server: Server) -> bool:
    row = baseline.row
    if baseline.pools is not None and server.resource_pool_id not in baseline.pools:
        return False
    if not _fits(row.manufacturer, row.models, server):
        return False
    return any(_fits(b.manufacturer, b.models, server) for b in baseline.binaries)


def assess(baseline: Baseline, server: Server, running: Sequence[FirmwareComponent]) -> Assessment:
    """The server's compliance with ``baseline`` (which applies to it); ``running``: its
    firmware inventory entries in the active slot."""
    rows: list[ComponentCompliance] = []
    for binary in baseline.binaries:
        if not _fits(binary.manufacturer, binary.models, server):
            continue
        if server.last_inventory_at is None:
            rows.append(_row(binary, None, ComponentStatus.unknown))
            continue
        found = [entry for entry in running if matches(binary, entry)]
        if not found:
            rows.append(_row(binary, None, ComponentStatus.missing))
        rows.extend(_row(binary, entry, _status(entry.version, binary.version)) for entry in found)
    if server.last_inventory_at is None:
        status = ServerStatus.unknown
    elif all(r.status == ComponentStatus.compliant for r in rows):
        status = ServerStatus.compliant
    else:
        status = ServerStatus.non_compliant
    return Assessment(baseline, status, rows)


# --- loading ----------------------------------------------------------------------------------


async def _descendants(session: AsyncSession) -> dict[int, frozenset[int]]:
    """Every pool with itself and its sub-pools, all the way down."""
    pairs = (await session.exec(select(Pool.id, Pool.parent_id))).all()
    children: dict[int, list[int]] = {}
    for pool_id, parent_id in pairs:
        if pool_id is not None and parent_id is not None:
            children.setdefault(parent_id, []).append(pool_id)
    tree: dict[int, frozenset[int]] = {}
    for pool_id, _ in pairs:
        if pool_id is None:
            continue
        seen: set[int] = set()
        stack = [pool_id]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(children.get(current, ()))
        tree[pool_id] = frozenset(seen)
    return tree


async def load_baselines(
    session: AsyncSession, baseline_ids: Iterable[int] | None = None
) -> list[Baseline]:
    stmt = select(FirmwareBaseline).order_by(col(FirmwareBaseline.id))
    if baseline_ids is not None:
        stmt = stmt.where(col(FirmwareBaseline.id).in_(list(baseline_ids)))
    rows = (await session.exec(stmt)).all()
    if not rows:
        return []
    links = (
        await session.exec(
            select(FirmwareBaselineBinary, FirmwareBinary)
            .join(FirmwareBinary, col(FirmwareBinary.id) == col(FirmwareBaselineBinary.firmware_id))
            .where(col(FirmwareBaselineBinary.baseline_id).in_([r.id for r in rows]))
            .order_by(col(FirmwareBaselineBinary.position))
        )
    ).all()
    binaries: dict[int, list[FirmwareBinary]] = {}
    for link, binary in links:
        binaries.setdefault(link.baseline_id, []).append(binary)
    tree = await _descendants(session) if any(r.resource_pool_id for r in rows) else {}
    return [
        Baseline(
            row,
            tuple(binaries.get(row.id or 0, ())),
            None
            if row.resource_pool_id is None
            else tree.get(row.resource_pool_id, frozenset({row.resource_pool_id})),
        )
        for row in rows
    ]


async def running_firmware(
    session: AsyncSession, server_ids: Sequence[int]
) -> dict[int, list[FirmwareComponent]]:
    """The active-slot firmware entries of these servers."""
    found: dict[int, list[FirmwareComponent]] = {s: [] for s in server_ids}
    if not server_ids:
        return found
    rows = await session.exec(
        select(FirmwareComponent)
        .where(
            col(FirmwareComponent.server_id).in_(list(server_ids)),
            col(FirmwareComponent.slot) == Slot.active,
        )
        .order_by(col(FirmwareComponent.id))
    )
    for row in rows:
        found[row.server_id].append(row)
    return found


async def assess_servers(
    session: AsyncSession, baselines: Sequence[Baseline], servers: Sequence[Server]
) -> dict[int, list[Assessment]]:
    """Each server's assessments against the baselines (of those given) that apply to it."""
    running = await running_firmware(session, [s.id for s in servers if s.id is not None])
    return {
        server.id: [
            assess(baseline, server, running[server.id])
            for baseline in baselines
            if applies(baseline, server)
        ]
        for server in servers
        if server.id is not None
    }


# --- keeping the status and announcing its changes ---------------------------------------------


async def recompute(
    session: AsyncSession,
    *,
    server_ids: Sequence[int] | None = None,
    baseline_ids: Sequence[int] | None = None,
) -> int:
    """Compute the status of these servers (default: all) against these baselines (default:
    all), store what changed and stage one ``server.firmware_compliance_changed`` per change.
    A server a baseline no longer applies to loses its status silently. Returns the number of
    changes."""
    await session.flush()
    baselines = await load_baselines(session, baseline_ids)
    wanted = [b.id for b in baselines]
    stored_stmt = select(FirmwareCompliance)
    if baseline_ids is not None:
        stored_stmt = stored_stmt.where(col(FirmwareCompliance.baseline_id).in_(list(baseline_ids)))
    if server_ids is not None:
        stored_stmt = stored_stmt.where(col(FirmwareCompliance.server_id).in_(list(server_ids)))
    stored = {(r.server_id, r.baseline_id): r for r in (await session.exec(stored_stmt)).all()}
    if not baselines and not stored:
        return 0  # the common case for an inventory collection: nothing to keep
    stmt = select(Server).order_by(col(Server.id))
    if server_ids is not None:
        stmt = stmt.where(col(Server.id).in_(list(server_ids)))
    servers = (await session.exec(stmt)).all()
    assessed = await assess_servers(session, baselines, servers)
    by_id = {s.id: s for s in servers}
    seen: set[tuple[int, int]] = set()
    changes = 0
    for server_id, assessments in assessed.items():
        for assessment in assessments:
            key = (server_id, assessment.baseline.id)
            seen.add(key)
            record = stored.get(key)
            if record is not None and record.status == assessment.status:
                continue
            previous = record.status if record is not None else None
            if record is None:
                record = FirmwareCompliance(
                    server_id=server_id,
                    baseline_id=assessment.baseline.id,
                    status=assessment.status,
                )
            else:
                record.status = assessment.status
                record.revision += 1
            record.computed_at = utcnow()
            session.add(record)
            outbox.stage(
                session,
                catalog.server_event(
                    by_id[server_id],
                    "firmware_compliance_changed",
                    version=f"{assessment.baseline.id}.{record.revision}",
                    baseline=assessment.baseline.id,
                    firmware_compliance=assessment.status,
                    previous_firmware_compliance=previous,
                ),
            )
            changes += 1
    gone = [key for key in stored if key not in seen and key[1] in wanted]
    gone += [key for key in stored if key[1] not in wanted]
    for server_id, baseline_id in dict.fromkeys(gone):
        await session.exec(
            delete(FirmwareCompliance).where(
                col(FirmwareCompliance.server_id) == server_id,
                col(FirmwareCompliance.baseline_id) == baseline_id,
            )
        )
    return changes


async def binary_changed(session: AsyncSession, binary: FirmwareBinary) -> int:
    """A binary's version, scopes or matching rules changed: recompute the baselines naming it."""
    named = (
        await session.exec(
            select(FirmwareBaselineBinary.baseline_id).where(
                col(FirmwareBaselineBinary.firmware_id) == binary.id
            )
        )
    ).all()
    if not named:
        return 0
    return await recompute(session, baseline_ids=list(named))
