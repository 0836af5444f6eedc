"""The list machinery every collection endpoint shares.

An endpoint declares, in a few lines, which columns ``search`` looks in, which exact ``filters``
exist and which names ``ordering`` accepts; the query is built and run in SQL — counting, filtering,
sorting and slicing never load more rows than the page.

Contract (brief §4): envelope ``{count, next, previous, results}``; without ``page``/``page_size``
every match is returned; ``page_size`` at most 1000 (larger is a 400, not silently capped);
``search`` is a case-insensitive substring match (every whitespace-separated term must match some
search field); ``ordering`` takes ``-`` for descending and ``__`` for related fields.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel
from sqlalchemy import Boolean, Integer, String, func, or_
from sqlalchemy.orm import InstrumentedAttribute, Mapped
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from services.api.errors import APIError, FieldErrors

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

T = TypeVar("T")

Column = InstrumentedAttribute[Any] | ColumnElement[Any] | Mapped[Any]


class Page(BaseModel, Generic[T]):
    count: int
    next: str | None
    previous: str | None
    results: list[T]


@dataclass(frozen=True)
class OrderField:
    """An ordering over a related table's column, reached by outer joins."""

    column: Column
    joins: tuple[tuple[Any, Any], ...] = ()


@dataclass(frozen=True)
class ListSpec:
    pk: Column
    search: Sequence[Column] = ()
    filters: Mapping[str, Column] = field(default_factory=dict)
    ordering: Mapping[str, Column | OrderField] = field(default_factory=dict)
    default_ordering: str = "id"


@dataclass(frozen=True)
class ListQuery:
    spec: ListSpec
    request: Request
    page: int | None
    page_size: int | None
    search: str
    ordering: tuple[str, ...]
    filters: Mapping[str, Any]

    @property
    def paginated(self) -> bool:
        return self.page is not None or self.page_size is not None


def _positive_int(field_name: str, raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise FieldErrors.single(field_name, "A valid integer is required.") from None
    if value < 1:
        raise FieldErrors.single(field_name, "Ensure this value is greater than or equal to 1.")
    return value


def _coerce_filter(name: str, column: Column, raw: str) -> Any:
    column_type = getattr(column, "type", None)
    if isinstance(column_type, Boolean):
        lowered = raw.lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        raise FieldErrors.single(name, "Must be a valid boolean.")
    if isinstance(column_type, Integer):
        try:
            return int(raw)
        except ValueError:
            raise FieldErrors.single(name, "A valid integer is required.") from None
    return raw


def _parse_ordering(spec: ListSpec, raw: str | None) -> tuple[str, ...]:
    if not raw:
        return (spec.default_ordering,)
    terms = tuple(term.strip() for term in raw.split(",") if term.strip())
    unknown = [t for t in terms if t.removeprefix("-") not in spec.ordering]
    if unknown:
        allowed = ", ".join(sorted(spec.ordering))
        raise FieldErrors.single(
            "ordering", f"Unknown ordering field(s): {', '.join(unknown)}. Allowed: {allowed}."
        )
    return terms or (spec.default_ordering,)


def list_params(spec: ListSpec) -> Callable[..., ListQuery]:
    """A FastAPI dependency whose signature documents every filter in the OpenAPI schema."""

    def parse(request: Request, **params: str | None) -> ListQuery:
        filters = {
            name: _coerce_filter(name, spec.filters[name], raw)
            for name in spec.filters
            if (raw := params.get(name)) is not None and raw != ""
        }
        page_size = _positive_int("page_size", params.get("page_size"))
        if page_size is not None and page_size > MAX_PAGE_SIZE:
            raise FieldErrors.single(
                "page_size", f"Ensure this value is less than or equal to {MAX_PAGE_SIZE}."
            )
        return ListQuery(
            spec=spec,
            request=request,
            page=_positive_int("page", params.get("page")),
            page_size=page_size,
            search=(params.get("search") or "").strip(),
            ordering=_parse_ordering(spec, params.get("ordering")),
            filters=filters,
        )

    def query_param(name: str, description: str) -> inspect.Parameter:
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, Query(description=description)],
        )

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        query_param("page", "Page number, from 1. Past the last page: 404."),
        query_param(
            "page_size",
            f"Results per page (max {MAX_PAGE_SIZE}). Without page/page_size all results "
            "are returned.",
        ),
        query_param(
            "ordering",
            "Comma-separated fields, `-` for descending. One of: "
            + ", ".join(sorted(spec.ordering)),
        ),
    ]
    if spec.search:
        names = ", ".join(getattr(c, "key", str(c)) for c in spec.search)
        parameters.append(query_param("search", f"Case-insensitive substring over: {names}."))
    parameters += [query_param(name, f"Exact match on `{name}`.") for name in spec.filters]

    parse.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return parse


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: Column, pattern: str, dialect: str) -> ColumnElement[bool]:
    """Case-insensitive substring match that stays index-friendly.

    SQLite's LIKE is already case-insensitive for ASCII, and wrapping the column in lower()
    doubles the cost of the scan; PostgreSQL's ILIKE on the bare column can use a trigram index.
    Non-text columns (a status enum, a number) are compared as text.
    """
    target: Any = column
    if not isinstance(getattr(column, "type", None), String):
        target = func.cast(column, String)
    if dialect == "sqlite":
        return target.like(pattern, escape="\\")  # type: ignore[no-any-return]
    return target.ilike(pattern, escape="\\")  # type: ignore[no-any-return]


def apply_filters(stmt: SelectOfScalar[Any], query: ListQuery, dialect: str) -> SelectOfScalar[Any]:
    spec = query.spec
    for name, value in query.filters.items():
        stmt = stmt.where(spec.filters[name] == value)
    for term in query.search.split():
        pattern = f"%{_escape_like(term)}%"
        stmt = stmt.where(or_(*(_contains(column, pattern, dialect) for column in spec.search)))
    return stmt


def apply_ordering(stmt: SelectOfScalar[Any], query: ListQuery) -> SelectOfScalar[Any]:
    spec = query.spec
    joined: set[int] = set()
    clauses: list[Any] = []
    for term in query.ordering:
        descending = term.startswith("-")
        target = spec.ordering[term.removeprefix("-")]
        column: Column
        if isinstance(target, OrderField):
            for join_target, onclause in target.joins:
                if id(join_target) not in joined:
                    stmt = stmt.outerjoin(join_target, onclause)
                    joined.add(id(join_target))
            column = target.column
        else:
            column = target
        clauses.append(column.desc() if descending else column.asc())
    # The primary key as the last key keeps pages stable when the sort key has ties.
    clauses.append(spec.pk.asc())
    return stmt.order_by(*clauses)


def _page_url(query: ListQuery, page: int, page_size: int) -> str:
    url = query.request.url.include_query_params(page=page, page_size=page_size)
    public = query.request.app.state.settings.public_url
    if public:
        return f"{public.rstrip('/')}{url.path}?{url.query}"
    return str(url)


async def paginate(
    session: AsyncSession,
    stmt: SelectOfScalar[Any],
    query: ListQuery,
    to_public: Callable[[Any], T],
) -> Page[T]:
    """Run ``stmt`` (a ``select`` of the listed entity) filtered, ordered and sliced."""
    filtered = apply_filters(stmt, query, session.get_bind().dialect.name)
    count_stmt = select(func.count()).select_from(filtered.order_by(None).subquery())
    ordered = apply_ordering(filtered, query)
    if not query.paginated:
        rows = (await session.exec(ordered)).all()
        return Page(count=len(rows), next=None, previous=None, results=[to_public(r) for r in rows])

    page = query.page or 1
    page_size = query.page_size or DEFAULT_PAGE_SIZE
    count = (await session.exec(count_stmt)).one()
    if page > 1 and (page - 1) * page_size >= count:
        raise APIError(404, "Invalid page.")
    rows = (await session.exec(ordered.offset((page - 1) * page_size).limit(page_size))).all()
    has_next = page * page_size < count
    return Page(
        count=count,
        next=_page_url(query, page + 1, page_size) if has_next else None,
        previous=_page_url(query, page - 1, page_size) if page > 1 else None,
        results=[to_public(r) for r in rows],
    )
