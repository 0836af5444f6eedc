"""The list machinery every collection endpoint shares.

An endpoint declares, in a few lines, which columns ``search`` looks in, which exact ``filters``
exist and which names ``ordering`` accepts; the query is built and run in SQL — counting, filtering,
sorting and slicing never load more rows than the page.

Contract: the guide's; Django REST Framework's where it is silent, since its clients parse
that: envelope ``{count, next, previous, results}``; without ``page``/``page_size`` every match is
returned; ``page_size`` above 1000 is capped at 1000 and one that is not a positive integer is
ignored (PageNumberPagination); ``page=last`` is the last page, a page that does not exist is 404
``Invalid page.``; ``search`` is a case-insensitive substring match (every whitespace-separated
term must match some search field); ``ordering`` takes ``-`` for descending and ``__`` for related
fields, and ignores names it does not know (OrderingFilter); every scalar field of the listed
shape is an exact filter, ids also as ``<field>__in=1,2``, and a relation filter naming nothing the
caller can see is a 400 like django-filter's. Unknown query parameters are ignored, as DRF does.

Lists whose shape is all columns (``ListSpec.columns``: the public fields the table stores, the
related ids, and id lists through a link table, ``collections``) take the short path,
``list_response``: only those columns are selected, each link table is read once for the page,
and the rows are validated and serialised in one pass each (a ``TypeAdapter`` to JSON bytes,
returned as is). The unpaginated full list is serialised as it is sent, in chunks.
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    TypeDecorator,
    false,
    func,
    literal_column,
    or_,
    table,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from services.api.access import Scope, ScopeDep
from services.api.errors import APIError, FieldErrors
from services.api.lookup import MAX_ID

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
LAST_PAGE = "last"
IN_SUFFIX = "__in"

T = TypeVar("T")

Column = InstrumentedAttribute[Any] | ColumnElement[Any] | Mapped[Any]

INVALID_CHOICE = "Select a valid choice. That choice is not one of the available choices."


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
class Filter:
    """An exact-match filter. ``related``: the column holds ids of this table, and a value that
    names no row the caller can see is refused (django-filter's ModelChoiceFilter); ``choices``:
    the value must be one of the enum's."""

    column: Column
    related: type[SQLModel] | None = None
    choices: type[StrEnum] | None = None

    @property
    def takes_ids(self) -> bool:
        return self.related is not None or getattr(self.column, "key", None) == "id"


@dataclass(frozen=True)
class Collection:
    """A public field listing the ids of related rows, read from a link table: ``owner`` holds
    the listed row's id, ``member`` the related id (listed in ascending order)."""

    owner: Column
    member: Column


@dataclass(frozen=True)
class ListSpec:
    """What a list endpoint offers. ``public`` (the listed shape) makes each of its scalar fields
    an exact filter (`field_filters`); ``joined`` are tables the listed statement joins, whose
    columns stand for the public fields the listed table lacks (a catalog entry's artifact);
    ``related`` names the fields that hold ids of another table (public name → id column,
    table); ``unfiltered`` the public fields that are no filter; ``filters`` adds or overrides
    filters by hand."""

    pk: Column
    search: Sequence[Column] = ()
    public: type[BaseModel] | None = None
    joined: Sequence[type[SQLModel]] = ()
    unfiltered: frozenset[str] = frozenset()
    related: Mapping[str, tuple[Column, type[SQLModel]]] = field(default_factory=dict)
    filters: Mapping[str, Column | Filter] = field(default_factory=dict)
    ordering: Mapping[str, Column | OrderField] = field(default_factory=dict)
    default_ordering: str = "id"
    collections: Mapping[str, Collection] = field(default_factory=dict)
    # The table has a search index over ``search`` (migration ``0018_search_indexes``: an FTS5
    # trigram table on SQLite, a pg_trgm index on the joined columns on PostgreSQL).
    search_index: bool = False

    @cached_property
    def columns(self) -> tuple[Any, ...]:
        """Every scalar public field as a column labelled with the field's name (related ids
        under their public name); ``list_response`` needs every field to be one, or a
        ``collections`` entry."""
        assert self.public is not None, "list_response needs the listed shape"
        table: Any = self.pk.class_  # type: ignore[union-attr]
        found: list[Any] = []
        for name in self.public.model_fields:
            if name in self.collections:
                continue
            if name in self.related:
                found.append(col(self.related[name][0]).label(name))
                continue
            column = getattr(table, name, None)
            assert column is not None, f"{table.__name__} has no column for the field {name!r}"
            found.append(col(column).label(name))
        return tuple(found)

    @cached_property
    def page_model(self) -> type[Page[Any]]:
        return Page[self.public]  # type: ignore[name-defined]

    @cached_property
    def page_adapter(self) -> TypeAdapter[Page[Any]]:
        return TypeAdapter(self.page_model)

    @cached_property
    def rows_adapter(self) -> TypeAdapter[list[Any]]:
        return TypeAdapter(list[self.public])  # type: ignore[name-defined]

    @cached_property
    def parameters(self) -> dict[str, Filter]:
        """Every filter query parameter: ``name``, and ``name__in`` for id filters."""
        table: type[SQLModel] = self.pk.class_  # type: ignore[union-attr,assignment]
        by_field = (
            field_filters((table, *self.joined), self.public, related=self.related)
            if self.public
            else {}
        )
        given = {n: t if isinstance(t, Filter) else Filter(t) for n, t in self.filters.items()}
        found: dict[str, Filter] = {}
        for name, spec in (by_field | given).items():
            if name in self.unfiltered:
                continue
            found[name] = spec
            if spec.takes_ids:
                found[name + IN_SUFFIX] = spec
        return found


def _storage_type(column: Any) -> Any:
    """The SQL type a column stores (SQLModel wraps strings and datetimes in decorators)."""
    column_type = getattr(column, "type", None)
    return column_type.impl if isinstance(column_type, TypeDecorator) else column_type


def _enum_of(annotation: Any) -> type[StrEnum] | None:
    candidates = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    for candidate in (annotation, *candidates):
        if isinstance(candidate, type) and issubclass(candidate, StrEnum):
            return candidate
    return None


def field_filters(
    tables: Sequence[type[SQLModel]],
    public: type[BaseModel],
    *,
    related: Mapping[str, tuple[Column, type[SQLModel]]] | None = None,
) -> dict[str, Filter]:
    """A filter for every scalar field of ``public`` (the listed shape) that one of ``tables``
    (the first that has it) stores under the same name, plus the relations (public name → id
    column, related table)."""
    relations = related or {}
    filters: dict[str, Filter] = {}
    for name, info in public.model_fields.items():
        if name in relations:
            relation, model = relations[name]
            filters[name] = Filter(relation, related=model)
            continue
        attribute = next((getattr(t, name) for t in tables if hasattr(t, name)), None)
        stored = _storage_type(attribute)
        if (
            attribute is None
            or isinstance(stored, JSON)
            or not isinstance(stored, Integer | String | Boolean | DateTime)
        ):
            continue
        filters[name] = Filter(attribute, choices=_enum_of(info.annotation))
    return filters


# A filter value that can match nothing (an id beyond any id): answered without asking SQL.
_NOTHING = object()


@dataclass(frozen=True)
class FilterValue:
    spec: Filter
    raw: tuple[str, ...]
    values: tuple[Any, ...]
    many: bool


@dataclass(frozen=True)
class ListQuery:
    spec: ListSpec
    request: Request
    scope: Scope
    page: int | str | None
    page_size: int | None
    search: str
    ordering: tuple[str, ...]
    filters: Mapping[str, FilterValue]

    @property
    def paginated(self) -> bool:
        return self.page is not None or self.page_size is not None


def _page(raw: str | None) -> int | str | None:
    """DRF's PageNumberPagination: ``last``, or a positive integer; anything else is a page
    that does not exist (404)."""
    if raw is None or raw == "":
        return None
    if raw == LAST_PAGE:
        return LAST_PAGE
    try:
        value = int(raw)
    except ValueError:
        raise APIError(404, "Invalid page.") from None
    if value < 1:
        raise APIError(404, "Invalid page.")
    return value


def page_size_of(raw: str | None) -> int | None:
    """DRF's ``page_size`` query parameter: capped at the maximum; not a positive integer →
    as if it was not given."""
    try:
        value = int(raw or "")
    except ValueError:
        return None
    return min(value, MAX_PAGE_SIZE) if value > 0 else None


_DATETIME = TypeAdapter(datetime)


def _coerce_one(name: str, spec: Filter, raw: str) -> Any:
    column_type = _storage_type(spec.column)
    if spec.related is not None:
        # A relation's value is checked against the related rows (paginate); what cannot be an
        # id names nothing.
        try:
            value = int(raw)
        except ValueError:
            raise FieldErrors.single(name, _invalid_choice(name, raw)) from None
        return value if 1 <= value <= MAX_ID else _NOTHING
    if spec.choices is not None and raw not in {c.value for c in spec.choices}:
        raise FieldErrors.single(
            name, f"Select a valid choice. {raw} is not one of the available choices."
        )
    if isinstance(column_type, Boolean):
        lowered = raw.lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        raise FieldErrors.single(name, "Must be a valid boolean.")
    if isinstance(column_type, Integer):
        try:
            value = int(raw)
        except ValueError:
            raise FieldErrors.single(name, "A valid integer is required.") from None
        # Beyond the column's range nothing can match; the database would refuse the number.
        bound = 2**63 - 1 if isinstance(column_type, BigInteger) else MAX_ID
        return value if -bound - 1 <= value <= bound else _NOTHING
    if isinstance(column_type, DateTime):
        try:
            moment = _DATETIME.validate_python(raw)
        except ValidationError:
            raise FieldErrors.single(name, "Enter a valid date/time.") from None
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return raw


def _invalid_choice(name: str, raw: str) -> str:
    if name.endswith(IN_SUFFIX):
        return f"Select a valid choice. {raw} is not one of the available choices."
    return INVALID_CHOICE


def _coerce_filter(name: str, spec: Filter, raw: str) -> FilterValue:
    if name.endswith(IN_SUFFIX):
        parts = tuple(part.strip() for part in raw.split(",") if part.strip())
        values = tuple(_coerce_one(name, spec, p) for p in parts)
        return FilterValue(spec, parts, values, many=True)
    return FilterValue(spec, (raw,), (_coerce_one(name, spec, raw),), many=False)


def _parse_ordering(spec: ListSpec, raw: str | None) -> tuple[str, ...]:
    """The known terms in order; unknown ones are dropped (DRF's OrderingFilter), so a column
    that is not listed never reaches SQL."""
    terms = tuple(
        term
        for term in (t.strip() for t in (raw or "").split(","))
        if term and term.removeprefix("-") in spec.ordering
    )
    return terms or (spec.default_ordering,)


def list_params(spec: ListSpec) -> Callable[..., ListQuery]:
    """A FastAPI dependency whose signature documents every filter in the OpenAPI schema."""
    filter_parameters = spec.parameters

    def parse(request: Request, scope: ScopeDep, **params: str | None) -> ListQuery:
        filters = {
            name: _coerce_filter(name, filter_parameters[name], raw)
            for name in filter_parameters
            if (raw := params.get(name)) is not None and raw != ""
        }
        return ListQuery(
            spec=spec,
            request=request,
            scope=scope,
            page=_page(params.get("page")),
            page_size=page_size_of(params.get("page_size")),
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
        inspect.Parameter("scope", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ScopeDep),
        query_param("page", "Page number, from 1, or `last`. A page that does not exist: 404."),
        query_param(
            "page_size",
            f"Results per page; above {MAX_PAGE_SIZE} means {MAX_PAGE_SIZE}, not a positive "
            "integer means not given. Without page/page_size all results are returned.",
        ),
        query_param(
            "ordering",
            "Comma-separated fields, `-` for descending; unknown ones are ignored. One of: "
            + ", ".join(sorted(spec.ordering)),
        ),
    ]
    if spec.search:
        names = ", ".join(getattr(c, "key", str(c)) for c in spec.search)
        parameters.append(query_param("search", f"Case-insensitive substring over: {names}."))
    for name, target in filter_parameters.items():
        if name.endswith(IN_SUFFIX):
            description = f"Any of these comma-separated ids of `{name.removesuffix(IN_SUFFIX)}`."
        elif target.choices is not None:
            description = f"Exact match on `{name}`: " + ", ".join(c.value for c in target.choices)
        else:
            description = f"Exact match on `{name}`."
        parameters.append(query_param(name, description))

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


# The shortest term the trigram tokenizer finds; shorter ones are matched with LIKE.
MIN_INDEXED_TERM = 3


def search_document(columns: Sequence[Column]) -> ColumnElement[str]:
    """The search columns, NULL as '', joined by a space: the expression PostgreSQL's search
    index covers (migration ``0018_search_indexes``; literals inline, as in the index, so the
    planner matches it). A term holds no whitespace, so it is a substring of the document
    exactly when it is one of some column."""
    parts = [func.coalesce(column, literal_column("''")) for column in columns]
    document: Any = parts[0]
    for part in parts[1:]:
        document = document.op("||")(literal_column("' '")).op("||")(part)
    return document  # type: ignore[no-any-return]


def _search_term(spec: ListSpec, term: str, dialect: str) -> ColumnElement[bool]:
    pattern = f"%{_escape_like(term)}%"
    if spec.search_index and dialect == "postgresql":
        return search_document(spec.search).ilike(pattern, escape="\\")
    if spec.search_index and dialect == "sqlite" and len(term) >= MIN_INDEXED_TERM:
        index = f"{spec.pk.class_.__tablename__}_search"  # type: ignore[union-attr]
        phrase = '"' + term.replace('"', '""') + '"'
        matches: Any = (
            select(literal_column("rowid"))
            .select_from(table(index))
            .where(literal_column(index).op("MATCH")(phrase))
        )
        return col(spec.pk).in_(matches)
    return or_(*(_contains(column, pattern, dialect) for column in spec.search))


def apply_filters(stmt: SelectOfScalar[Any], query: ListQuery, dialect: str) -> SelectOfScalar[Any]:
    spec = query.spec
    for given in query.filters.values():
        values = [v for v in given.values if v is not _NOTHING]
        column: Any = given.spec.column
        if not values:
            stmt = stmt.where(false())
        elif given.many:
            stmt = stmt.where(column.in_(values))
        else:
            stmt = stmt.where(column == values[0])
    for term in query.search.split():
        stmt = stmt.where(_search_term(spec, term, dialect))
    return stmt


async def check_relations(session: AsyncSession, query: ListQuery) -> None:
    """A relation filter naming a row that does not exist, or that the caller cannot see
    (``Scope.narrow_ids``), is a 400 like django-filter's — the same answer for both, so it
    reveals nothing."""
    errors: dict[str, list[str]] = {}
    for name, given in query.filters.items():
        model = given.spec.related
        if model is None:
            continue
        wanted = [v for v in given.values if v is not _NOTHING]
        pk: Any = col(model.id)  # type: ignore[attr-defined]
        stmt = query.scope.narrow_ids(select(pk).where(pk.in_(wanted)), model)
        found = set((await session.exec(stmt)).all()) if wanted else set()
        missing = [
            raw
            for raw, value in zip(given.raw, given.values, strict=True)
            if value is _NOTHING or value not in found
        ]
        if missing:
            errors[name] = [_invalid_choice(name, raw) for raw in missing]
    if errors:
        raise FieldErrors(errors)


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
    return page_url(query.request, page, page_size)


def page_url(request: Request, page: int, page_size: int) -> str:
    url = request.url.include_query_params(page=page, page_size=page_size)
    public = request.app.state.settings.public_url
    if public:
        return f"{public.rstrip('/')}{url.path}?{url.query}"
    return str(url)


def page_of(
    request: Request, items: Sequence[T], page_raw: str | None, page_size_raw: str | None
) -> Page[T]:
    """A computed list (not a query) with the same pagination contract as `paginate`."""
    page_param, page_size = _page(page_raw), page_size_of(page_size_raw)
    if page_param is None and page_size is None:
        return Page(count=len(items), next=None, previous=None, results=list(items))
    size = page_size or DEFAULT_PAGE_SIZE
    last = max(1, math.ceil(len(items) / size))
    page = last if page_param == LAST_PAGE else int(page_param or 1)
    if page > last:
        raise APIError(404, "Invalid page.")
    return Page(
        count=len(items),
        next=page_url(request, page + 1, size) if page * size < len(items) else None,
        previous=page_url(request, page - 1, size) if page > 1 else None,
        results=list(items[(page - 1) * size : page * size]),
    )


async def paginate(
    session: AsyncSession,
    stmt: SelectOfScalar[Any],
    query: ListQuery,
    to_public: Callable[[Any], T],
) -> Page[T]:
    """Run ``stmt`` (a ``select`` of the listed entity) filtered, ordered and sliced."""
    await check_relations(session, query)
    filtered = apply_filters(stmt, query, session.get_bind().dialect.name)
    ordered = apply_ordering(filtered, query)
    if not query.paginated:
        rows = (await session.exec(ordered)).all()
        return Page(count=len(rows), next=None, previous=None, results=[to_public(r) for r in rows])
    window, rows = await _fetch_page(session, filtered, ordered, query)
    return Page(
        count=window.count,
        next=window.next_url(query),
        previous=window.previous_url(query),
        results=[to_public(r) for r in rows],
    )


@dataclass(frozen=True)
class _Window:
    """The requested page of a paginated list."""

    count: int
    page: int
    page_size: int

    def slice(self, ordered: Any) -> Any:
        return ordered.offset((self.page - 1) * self.page_size).limit(self.page_size)

    def next_url(self, query: ListQuery) -> str | None:
        if self.page * self.page_size >= self.count:
            return None
        return _page_url(query, self.page + 1, self.page_size)

    def previous_url(self, query: ListQuery) -> str | None:
        return _page_url(query, self.page - 1, self.page_size) if self.page > 1 else None


async def _fetch_page(
    session: AsyncSession, filtered: Any, ordered: Any, query: ListQuery
) -> tuple[_Window, Sequence[Any]]:
    """The requested page's rows and its place among the matches (404 past the last page).

    ``count`` is always exact, but a page that is not full tells it without a ``COUNT``: every
    match is before it or on it. Only a full page (and ``page=last``) pays for counting, which
    keeps selective searches and filters at the cost of reading their page.
    """
    page_size = query.page_size or DEFAULT_PAGE_SIZE
    count: int | None = None
    if query.page == LAST_PAGE:
        count = await _count(session, filtered)
        page = max(1, math.ceil(count / page_size))
    else:
        page = int(query.page or 1)
    window = _Window(count or 0, page, page_size)
    rows = (await session.exec(window.slice(ordered))).all()
    if count is None:
        if not rows and page > 1:
            raise APIError(404, "Invalid page.")
        offset = (page - 1) * page_size
        count = offset + len(rows) if len(rows) < page_size else await _count(session, filtered)
    return _Window(count, page, page_size), rows


async def _count(session: AsyncSession, filtered: Any) -> int:
    count_stmt = select(func.count()).select_from(filtered.order_by(None).subquery())
    return int((await session.exec(count_stmt)).one())


# Rows serialised per chunk of an unpaginated list, and ids per statement reading a link table
# (below SQLite's limit on bound parameters).
STREAM_CHUNK = 2000
IDS_PER_STATEMENT = 5000


async def _collections(
    session: AsyncSession, spec: ListSpec, rows: Sequence[Any]
) -> list[dict[str, Any]]:
    """``rows`` as dicts (what pydantic validates fastest), each ``collections`` field filled in:
    one statement per link table (and per ``IDS_PER_STATEMENT`` rows)."""
    if not rows:
        return []
    keys = rows[0]._fields
    filled = [dict(zip(keys, row, strict=True)) for row in rows]
    ids = [row["id"] for row in filled]
    for name, link in spec.collections.items():
        members: dict[int, list[int]] = {}
        for start in range(0, len(ids), IDS_PER_STATEMENT):
            chunk = ids[start : start + IDS_PER_STATEMENT]
            stmt = (
                select(link.owner, link.member)
                .where(col(link.owner).in_(chunk))
                .order_by(link.owner, link.member)
            )
            for owner, member in (await session.exec(stmt)).all():
                members.setdefault(owner, []).append(member)
        for row in filled:
            row[name] = members.get(row["id"], [])
    return filled


async def list_response(
    session: AsyncSession,
    query: ListQuery,
    *,
    narrow: Callable[[Select[Any]], Select[Any]] = lambda stmt: stmt,
    adjust: Callable[[Any], Any] | None = None,
) -> Response:
    """The list as ``paginate`` answers it, from the listed columns only (``ListSpec.columns``):
    ``narrow`` restricts the select to what the caller may see, ``adjust`` changes a validated
    row before it is shown (what a member is not told)."""
    spec = query.spec
    await check_relations(session, query)
    stmt: Any = narrow(select(*spec.columns))
    filtered = apply_filters(stmt, query, session.get_bind().dialect.name)
    ordered = apply_ordering(filtered, query)
    if not query.paginated:
        rows = (await session.exec(ordered)).all()
        filled = await _collections(session, spec, rows)
        return StreamingResponse(_stream(spec, filled, adjust), media_type="application/json")
    window, rows = await _fetch_page(session, filtered, ordered, query)
    results: Any = spec.rows_adapter.validate_python(await _collections(session, spec, rows))
    if adjust is not None:
        results = [adjust(r) for r in results]
    envelope = spec.page_model.model_construct(
        count=window.count,
        next=window.next_url(query),
        previous=window.previous_url(query),
        results=results,
    )
    return Response(spec.page_adapter.dump_json(envelope), media_type="application/json")


async def _stream(
    spec: ListSpec, rows: Sequence[dict[str, Any]], adjust: Callable[[Any], Any] | None
) -> AsyncIterator[bytes]:
    """The unpaginated envelope, serialised chunk by chunk as the client reads it."""
    yield b'{"count":%d,"next":null,"previous":null,"results":[' % len(rows)
    for start in range(0, len(rows), STREAM_CHUNK):
        chunk: Iterable[Any] = spec.rows_adapter.validate_python(rows[start : start + STREAM_CHUNK])
        if adjust is not None:
            chunk = [adjust(r) for r in chunk]
        encoded = spec.rows_adapter.dump_json(list(chunk))[1:-1]
        yield (b"," + encoded) if start else encoded
    yield b"]}"
