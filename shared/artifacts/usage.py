"""What keeps an artifact from being deleted: the one place that answers "is it in use?".

Deleting a binary that a BMC is downloading, a baseline names or a running job applies would
break that work, so ``DELETE`` on a catalog entry answers 409 listing every use found here.
Each check is a function of (session, artifact) returning the uses it knows of; whoever adds a
kind of use (firmware baselines, firmware-update and deployment jobs) adds its check to
``CHECKS`` — the catalog routes need no change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.core.clock import utcnow
from shared.models import (
    Artifact,
    ArtifactGrant,
    FirmwareBaseline,
    FirmwareBaselineBinary,
    FirmwareBinary,
)


@dataclass(frozen=True)
class Use:
    # Plural, as the 409 body's key: `grants`, `baselines`, `jobs`.
    kind: str
    id: int
    description: str


Check = Callable[[AsyncSession, Artifact], Awaitable[Sequence[Use]]]


async def active_grants(session: AsyncSession, artifact: Artifact) -> Sequence[Use]:
    """Grants still valid: a BMC may be fetching the bytes right now (or be about to)."""
    now = utcnow()
    grants = await session.exec(
        select(ArtifactGrant)
        .where(
            col(ArtifactGrant.artifact_id) == artifact.id,
            col(ArtifactGrant.revoked_at).is_(None),
            col(ArtifactGrant.expires_at) > now,
        )
        .order_by(col(ArtifactGrant.id))
    )
    return [
        Use("grants", g.id or 0, f"grant {g.id} ({g.purpose}) until {g.expires_at.isoformat()}")
        for g in grants
    ]


async def baselines(session: AsyncSession, artifact: Artifact) -> Sequence[Use]:
    """Baselines naming the binary: compliance and updates refer to it."""
    rows = await session.exec(
        select(FirmwareBaseline)
        .join(
            FirmwareBaselineBinary,
            col(FirmwareBaselineBinary.baseline_id) == col(FirmwareBaseline.id),
        )
        .join(FirmwareBinary, col(FirmwareBinary.id) == col(FirmwareBaselineBinary.firmware_id))
        .where(col(FirmwareBinary.artifact_id) == artifact.id)
        .order_by(col(FirmwareBaseline.id))
    )
    return [Use("baselines", b.id or 0, f"baseline {b.id} ({b.name})") for b in rows]


CHECKS: tuple[Check, ...] = (active_grants, baselines)


async def uses_of(session: AsyncSession, artifact: Artifact) -> list[Use]:
    """Every current use of ``artifact``; empty: it may be deleted."""
    found: list[Use] = []
    for check in CHECKS:
        found.extend(await check(session, artifact))
    return found
