"""``/api/events/``: the recent events and a live stream of them (Server-Sent Events), for clients
that only speak HTTP.

Both read RACKSMITH_EVENTS through ``services.api.event_feed``, with filter subjects narrowed
to what the user may hear about (``access.event_visibility``), and show a user only the events
``Scope.sees_event`` allows. A stream sends each event as the CloudEvent exactly as it travels on
NATS (a server's BMC failure details only to superusers: ``Scope.event_view``), with its stream
sequence as the SSE ``id``, so a reconnecting client's ``Last-Event-ID`` resumes right after the
last event it received. Each user may hold ``RACKSMITH_SSE_MAX_STREAMS_PER_USER`` streams open
per API process.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import nats.errors
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from nats.js import JetStreamContext
from pydantic import BaseModel, Field
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope

from services.api.access import Scope, ScopeDep, event_visibility, scope_of
from services.api.auth import Principal, TokenRejected, current_user_from_claims
from services.api.deps import SessionDep, StateDep
from services.api.errors import APIError, FieldErrors, documented
from services.api.event_feed import (
    EventFilter,
    EventReader,
    FeedEvent,
    Pattern,
    Resume,
    Visibility,
    bounds,
    build_filter,
    newest,
    oldest_after,
    parse_query,
    resume,
    sequence_before,
)
from services.api.listing import MAX_PAGE_SIZE, page_size_of
from shared.contracts.events import CloudEvent
from shared.core.db import Database
from shared.core.log import get_logger

log = get_logger(__name__)

router = APIRouter(prefix="/api/events", tags=["events"])

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
# How long a browser waits before reconnecting after the connection drops.
RETRY_MS = 3000
# The SSE event telling a resuming client that events it may have missed are gone.
LOST_EVENT = "events_lost"
HEARTBEAT = format_sse_event(comment="heartbeat")
# Shortest wait for events, so a heartbeat that is nearly due does not make a busy loop.
MIN_WAIT_S = 0.05

EVENTS_UNAVAILABLE = documented(503, "The event stream (NATS) is unavailable")

TypeParam = Annotated[
    list[str] | None,
    Query(
        alias="type",
        description="Event types, full (`io.racksmith.server.assigned`) or short "
        "(`server.assigned`); repeatable and comma-separated.",
    ),
]
EntityParam = Annotated[
    list[str] | None,
    Query(
        description="Entities, a kind (`server`) or one object (`server/7`); repeatable and "
        "comma-separated. Combined with `type`: events matching both.",
    ),
]


@dataclass(frozen=True)
class EventQuery:
    """What the request asked for, and what the user may hear about."""

    wanted: set[Pattern] | None
    visible: Visibility

    @property
    def filter(self) -> EventFilter:
        return build_filter(self.wanted, self.visible)


async def event_query(
    scope: ScopeDep, session: SessionDep, types: TypeParam = None, entity: EntityParam = None
) -> EventQuery:
    wanted = parse_query(types or [], entity or [])
    return EventQuery(wanted, await event_visibility(session, scope))


QueryDep = Annotated[EventQuery, Depends(event_query)]


class EventRecord(CloudEvent):
    """A CloudEvent as published, with its position in the stream."""

    sequence: int = Field(
        description="Position in RACKSMITH_EVENTS; as `Last-Event-ID` of "
        "`/api/events/stream/` it streams everything after this event."
    )


class EventPage(BaseModel):
    next: str | None = Field(description="Older events.")
    previous: str | None = Field(description="Newer events.")
    results: list[EventRecord]


@dataclass(frozen=True)
class Cursor:
    """A page boundary: the events before ``position`` (older) or after it (newer)."""

    position: int
    newer: bool

    def encode(self) -> str:
        raw = f"p={self.position}" + ("&r=1" if self.newer else "")
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        try:
            fields = dict(
                parse_qsl(base64.urlsafe_b64decode(raw.encode()).decode(), strict_parsing=True)
            )
            position = int(fields["p"])
        except (ValueError, KeyError, binascii.Error, UnicodeDecodeError):
            raise FieldErrors.single("cursor", "Invalid cursor.") from None
        if position < 0:
            raise FieldErrors.single("cursor", "Invalid cursor.")
        return cls(position, newer=fields.get("r") == "1")


def _link(request: Request, cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    url = request.url.include_query_params(cursor=cursor.encode())
    public = request.app.state.settings.public_url
    if public:
        return f"{public.rstrip('/')}{url.path}?{url.query}"
    return str(url)


def _jetstream(state: StateDep) -> JetStreamContext:
    client = state.runtime.nats
    if client is None or not client.is_connected:
        raise APIError(503, "The event stream is unavailable.")
    return client.jetstream()


@contextmanager
def _broker_errors() -> Iterator[None]:
    try:
        yield
    except (nats.errors.Error, TimeoutError) as exc:
        raise APIError(503, "The event stream is unavailable.") from exc


def _record(item: FeedEvent, scope: Scope) -> EventRecord:
    return EventRecord(**scope.event_view(item.event).model_dump(), sequence=item.sequence)


@router.get("/", summary="List recent events", responses=EVENTS_UNAVAILABLE)
async def list_events(
    request: Request,
    scope: ScopeDep,
    state: StateDep,
    query: QueryDep,
    since: Annotated[
        datetime | None,
        Query(description="Only events stored at or after this ISO 8601 time (UTC if no zone)."),
    ] = None,
    cursor: Annotated[
        str | None, Query(description="Opaque page position from `next` / `previous`.")
    ] = None,
    page_size: Annotated[
        str | None,
        Query(
            description=f"Events per page (default {DEFAULT_PAGE_SIZE}); above {MAX_PAGE_SIZE} "
            f"means {MAX_PAGE_SIZE}, not a positive integer means the default."
        ),
    ] = None,
) -> EventPage:
    """Events still in the stream, newest first, cursor-paginated (stable while new events
    arrive); each is the CloudEvent plus its `sequence`."""
    size = page_size_of(page_size) or DEFAULT_PAGE_SIZE
    position = Cursor.decode(cursor) if cursor else None
    filters = query.filter
    js = _jetstream(state)
    with _broker_errors():
        floor = 1
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            floor = await sequence_before(js, since) + 1
        if position is not None and position.newer:
            items = await oldest_after(
                js,
                filters,
                after=max(position.position, floor - 1),
                count=size + 1,
                keep=scope.sees_event,
            )
            has_newer = len(items) > size
            items = items[:size][::-1]
            newer: Cursor | None = Cursor(items[0].sequence, newer=True) if has_newer else None
            older: Cursor | None = Cursor(
                items[-1].sequence if items else position.position + 1, newer=False
            )
        else:
            items = await newest(
                js,
                filters,
                before=position.position if position else None,
                floor=floor,
                count=size + 1,
                keep=scope.sees_event,
            )
            has_older = len(items) > size
            items = items[:size]
            older = Cursor(items[-1].sequence, newer=False) if has_older else None
            newer = None
            if position is not None:
                boundary = items[0].sequence if items else max(position.position - 1, 0)
                newer = Cursor(boundary, newer=True)
    return EventPage(
        next=_link(request, older),
        previous=_link(request, newer),
        results=[_record(item, scope) for item in items],
    )


def _sequence(name: str, raw: str) -> int:
    if not raw.strip().isdigit():
        raise FieldErrors.single(name, "A valid integer is required.")
    return int(raw)


def _closing(app: FastAPI) -> asyncio.Event:
    """Set when the server stops.

    uvicorn waits for every response to finish before it shuts down, and an event stream never
    finishes by itself; so the server sets this (``end_streams``) and every stream ends.
    """
    closing: asyncio.Event | None = getattr(app.state, "event_streams_closing", None)
    if closing is None:
        closing = app.state.event_streams_closing = asyncio.Event()
    return closing


def end_streams(app: FastAPI) -> None:
    """End every open event stream of ``app`` (and refuse new ones): the server is stopping."""
    _closing(app).set()


class StreamSlots:
    """Open event streams per user in this API process (``RACKSMITH_SSE_MAX_STREAMS_PER_USER``):
    each holds a NATS consumer and a connection, so one user cannot hold an unbounded number."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: Counter[int] = Counter()

    def take(self, user_id: int) -> Callable[[], None]:
        """A slot for ``user_id`` (429 if none is free) and the function that frees it."""
        if self._open[user_id] >= self.cap:
            raise APIError(
                429, f"Too many open event streams: at most {self.cap} per user; close one first."
            )
        self._open[user_id] += 1
        freed = False

        def free() -> None:
            nonlocal freed
            if not freed:
                freed = True
                self._open[user_id] -= 1
                if not self._open[user_id]:
                    del self._open[user_id]

        return free


def _slots(app: FastAPI, cap: int) -> StreamSlots:
    slots: StreamSlots | None = getattr(app.state, "event_stream_slots", None)
    if slots is None:
        slots = app.state.event_stream_slots = StreamSlots(cap)
    return slots


class _SlotResponse(EventSourceResponse):
    """Frees its stream slot however the response ends: finished, failed, or the client gone
    before the first frame."""

    def __init__(self, frames: AsyncIterator[bytes], free: Callable[[], None]) -> None:
        # No caching, and no buffering by nginx-style proxies: each frame must reach the client
        # now.
        super().__init__(frames, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._free = free

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._free()


class LiveView:
    """The streaming user's scope and the reader's filter, kept current while the stream runs.

    Pool and membership changes must reach an open stream, not wait for its next connect: the
    view is read again after an event that may change it (``Scope.changes_view``: a pool event,
    a server or switch moving into or out of the user's pools) and at least every ``every_s``;
    when the filter changes, the reader goes on with the new one right after that event. A
    token that no longer stands for its user (deleted, deactivated, new password, lost access)
    ends the stream.
    """

    def __init__(
        self, db: Database, scope: Scope, claims: dict[str, Any], query: EventQuery, every_s: float
    ) -> None:
        self.db = db
        self.scope = scope
        self.visible = query.visible
        self.claims = claims
        self.wanted = query.wanted
        self.every_s = every_s
        self._due = time.monotonic() + every_s

    @property
    def due(self) -> bool:
        return time.monotonic() >= self._due

    async def refresh(self) -> bool:
        """Read the view again; False if the token no longer stands for its user."""
        async with self.db.session() as session:
            try:
                user = await current_user_from_claims(session, self.claims)
            except TokenRejected:
                return False
            self.scope = await scope_of(session, Principal.of(user))
            self.visible = await event_visibility(session, self.scope)
        self._due = time.monotonic() + self.every_s
        return True

    async def refilter(self, reader: EventReader, after: int) -> bool:
        """Give ``reader`` the filter of the current view, from ``after`` on, if it changed."""
        current = build_filter(self.wanted, self.visible)
        if current == reader.filter:
            return False
        await reader.refilter(current, after=after)
        return True


async def _unless_closing(closing: asyncio.Event, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result, or None if ``closing`` is set first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
    if closing.is_set():
        return None
    return task.result()


async def _frames(
    reader: EventReader,
    live: LiveView,
    start: Resume,
    *,
    closing: asyncio.Event,
    heartbeat_s: float,
    expires_at: float,
) -> AsyncIterator[bytes]:
    try:
        # The position goes out at once: a client that drops before any event arrives still
        # resumes from where it connected.
        yield format_sse_event(comment="racksmith events", id=str(start.after), retry=RETRY_MS)
        if start.lost is not None:
            yield format_sse_event(
                event=LOST_EVENT, data_str=json.dumps(start.lost), id=str(start.after)
            )
        last_sent = time.monotonic()
        while time.time() < expires_at:
            wait = max(MIN_WAIT_S, last_sent + heartbeat_s - time.monotonic())
            try:
                batch = await _unless_closing(closing, reader.next_batch(wait))
            except (nats.errors.Error, TimeoutError) as exc:
                # The client reconnects with Last-Event-ID and loses nothing.
                log.warning("events.stream_broken", error=repr(exc), position=reader.position)
                return
            if batch is None:
                return
            refiltered = False
            for item in batch:
                scope = live.scope
                if not scope.sees_event(item.event):
                    continue
                yield _frame(item, scope)
                last_sent = time.monotonic()
                if scope.changes_view(item.event, live.visible):
                    if not await live.refresh():
                        return
                    # The rest of the batch was read with the old filter: read it again.
                    if await live.refilter(reader, after=item.sequence):
                        refiltered = True
                        break
            if live.due and not refiltered:
                if not await live.refresh():
                    return
                await live.refilter(reader, after=reader.position)
            if time.monotonic() - last_sent >= heartbeat_s:
                yield HEARTBEAT
                last_sent = time.monotonic()
    finally:
        await reader.close()


def _frame(item: FeedEvent, scope: Scope) -> bytes:
    shown = scope.event_view(item.event)
    # As published, byte for byte, unless this user is shown less of it.
    data = item.body.decode() if shown is item.event else shown.model_dump_json()
    return format_sse_event(event=item.event.type, data_str=data, id=str(item.sequence))


STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`. The first frame carries the position (`id`) and "
        "the reconnection delay (`retry`); then one frame per event — `id`: stream sequence, "
        "`event`: CloudEvent type, `data`: the CloudEvent JSON as published on NATS; "
        f"`: heartbeat` comments while idle; an `{LOST_EVENT}` frame if a resume point is no "
        "longer stored.",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": "id: 1042\nevent: io.racksmith.server.assigned\n"
                'data: {"specversion":"1.0","id":"evt:server:7:assigned:3",…}\n\n',
            }
        },
    },
}


@router.get(
    "/stream/",
    summary="Stream events (Server-Sent Events)",
    # Not EventSourceResponse: FastAPI would take this coroutine for a generator of events;
    # the route returns its own EventSourceResponse, validated and connected before it starts.
    response_class=StreamingResponse,
    responses=STREAM_RESPONSE
    | EVENTS_UNAVAILABLE
    | documented(429, "The user holds RACKSMITH_SSE_MAX_STREAMS_PER_USER open streams already"),
)
async def stream_events(
    request: Request,
    scope: ScopeDep,
    session: SessionDep,
    state: StateDep,
    query: QueryDep,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume strictly after this stream sequence (browsers send it when "
            "they reconnect).",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(description="Same as the `Last-Event-ID` header, which wins if both are sent."),
    ] = None,
) -> EventSourceResponse:
    """Events as they happen; without a resume point, only new ones. The stream ends when the
    access token expires or the server stops; reconnect with `Last-Event-ID`."""
    after = None
    if last_event_id_header is not None:
        after = _sequence("Last-Event-ID", last_event_id_header)
    elif last_event_id is not None:
        after = _sequence("last_event_id", last_event_id)
    token = request.headers["authorization"].partition(" ")[2]
    claims = state.tokens.decode(token, "access")
    settings = state.settings
    assert scope.user.id is not None
    free = _slots(request.app, settings.sse_max_streams_per_user).take(scope.user.id)
    try:
        js = _jetstream(state)
        # A stream lasts hours: it must not hold the request's database connection (on SQLite,
        # a read transaction) all that time; the live view opens short sessions of its own.
        await session.close()
        with _broker_errors():
            stream = await bounds(js)
            start = resume(after, stream) if after is not None else Resume(stream.last, None)
            reader = await EventReader(js, query.filter, after=start.after).open()
    except BaseException:
        free()
        raise
    frames = _frames(
        reader,
        LiveView(state.runtime.db, scope, claims, query, settings.sse_heartbeat_s),
        start,
        closing=_closing(request.app),
        heartbeat_s=settings.sse_heartbeat_s,
        expires_at=float(claims["exp"]),
    )
    return _SlotResponse(frames, free)
