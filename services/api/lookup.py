"""Fetching rows by id for routes: 404 for a missing object, 400 naming the field for bad refs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.errors import FieldErrors, not_found

M = TypeVar("M", bound=SQLModel)

# The largest id any table hands out (PostgreSQL ``integer``). A larger number in a path or a
# body names nothing; sent to the database it would overflow the column type instead.
MAX_ID = 2**31 - 1


def is_id(value: int) -> bool:
    """Whether ``value`` can be the id of a row at all."""
    return 1 <= value <= MAX_ID


async def get_or_404(session: AsyncSession, model: type[M], pk: int, *options: Any) -> M:
    if not is_id(pk):
        raise not_found()
    pk_column: InstrumentedAttribute[Any] = model.id  # type: ignore[attr-defined]
    row: M | None = (
        await session.exec(select(model).where(pk_column == pk).options(*options))
    ).one_or_none()
    if row is None:
        raise not_found()
    return row


async def resolve_ids(
    session: AsyncSession, model: type[M], ids: Sequence[int], field: str
) -> list[M]:
    """Rows for ``ids`` in the given order, or a 400 naming ``field`` and the missing ids."""
    if not ids:
        return []
    pk_column: InstrumentedAttribute[Any] = model.id  # type: ignore[attr-defined]
    possible = {i for i in ids if is_id(i)}
    rows = (await session.exec(select(model).where(pk_column.in_(possible)))).all()
    by_id = {row.id: row for row in rows}  # type: ignore[attr-defined]
    missing = [i for i in dict.fromkeys(ids) if i not in by_id]
    if missing:
        raise FieldErrors({field: [f'Invalid pk "{i}" - object does not exist.' for i in missing]})
    return [by_id[i] for i in dict.fromkeys(ids)]
