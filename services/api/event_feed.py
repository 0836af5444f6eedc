"""Reading RACKSMITH_EVENTS for the API: filters, ordered readers, newest-first pages.

The NATS server does the filtering. A query's event types and entities become filter subjects
(``racksmith.evt.<entity>.<id|*>.<change|*>``) of an ephemeral pull consumer of its own, so a
stream or a page never reads events the client did not ask for. What a user who is not a
superuser may hear about narrows them further: one subject per server and switch in the user's
pools (plus the moves that may bring one into view), so such a user's reader is not handed every
other pool's events to throw away. Positions are JetStream stream sequences: an SSE ``id``, a
``Last-Event-ID`` and a list cursor are all one.

JetStream only reads forwards, yet the list shows the newest events first. A consumer's
``num_pending`` (how many matching events lie from its start to the end of the stream) is known
the moment it is created, without reading anything, so a page is found by counting: consumers
placed ever further back until the window before the cursor holds enough matches, then narrowed
by bisection, then read forwards — the work grows with the page and the logarithm of the stream,
not with the stream.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import anyio
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import Error as JetStreamError
from pydantic import ValidationError

from services.api.errors import FieldErrors
from shared.contracts import catalog, subjects
from shared.contracts.events import CloudEvent
from shared.core.log import get_logger
from shared.messaging.streams import EVENTS_STREAM

log = get_logger(__name__)

# Bounds the number of filter subjects a client can make the server evaluate per event.
MAX_ENTITY_FILTERS = 100
# Filter subjects one reader may narrow a user's events to (one per visible object); beyond
# it the reader asks for whole entities and filters in the API.
MAX_FILTER_SUBJECTS = 500
# Consumers are deleted when their reader closes; this only reaps those of a process that died.
INACTIVE_THRESHOLD_S = 120.0
FETCH_BATCH = 256
# Times one batch may find its consumer gone (and re-create it) before giving up.
REOPEN_ATTEMPTS = 3
# A page reads events that are already stored, so a fetch that waits this long found nothing.
PAGE_FETCH_TIMEOUT_S = 2.0

Keep = Callable[[CloudEvent], bool]


@dataclass(frozen=True)
class EventFilter:
    """The filter subjects a reader asks the server for; None: every event."""

    subjects: frozenset[str] | None

    @property
    def matches_nothing(self) -> bool:
        return self.subjects is not None and not self.subjects


def _values(raw: Iterable[str]) -> list[str]:
    """Repeated parameters, each possibly comma-separated: ``type=a&type=b,c`` → a, b, c."""
    return [part.strip() for value in raw for part in value.split(",") if part.strip()]


def _parse_entity(value: str) -> tuple[str, str] | str:
    """``server`` or ``server/7`` → (entity, id or ``*``); an error message if invalid."""
    entity, slash, entity_id = value.partition("/")
    if entity not in catalog.ENTITIES:
        return f"Unknown entity {entity!r}. Known: {', '.join(catalog.ENTITIES)}."
    if not slash:
        return entity, "*"
    if not entity_id.isdigit() or int(entity_id) < 1:
        return f"{value!r}: the id after '/' must be a positive integer."
    return entity, str(int(entity_id))


# (entity, id or "*", change or "*"): one filter subject, before it is spelled out.
Pattern = tuple[str, str, str]


@dataclass(frozen=True)
class EntityView:
    """What a user may hear about one entity: the objects (``ids``; None: all of them), and
    the changes heard for every object (``any_id``) because they may bring one into view."""

    ids: frozenset[int] | None
    any_id: frozenset[str] = frozenset()


# Per entity; None: everything (superusers). Entities missing from it are never heard.
Visibility = Mapping[str, EntityView] | None


def _subjects(patterns: set[Pattern]) -> frozenset[str]:
    # The server refuses a consumer whose filters overlap, and `server.*.*` already delivers
    # what `server.7.*` would.
    def covered(pattern: Pattern) -> bool:
        entity, entity_id, change = pattern
        wider = ((entity, "*", change), (entity, entity_id, "*"), (entity, "*", "*"))
        return any(w != pattern and w in patterns for w in wider)

    return frozenset(subjects.event_subject(*p) for p in patterns if not covered(p))


def parse_query(types: Iterable[str], entities: Iterable[str]) -> set[Pattern] | None:
    """The events ``type`` and ``entity`` query values ask for (None: all); 400 naming the
    parameter if invalid.

    Types and entities combine as "and": ``type=server.assigned&entity=server/7`` is the
    assignments of server 7.
    """
    errors: dict[str, list[str]] = {}
    kinds: set[tuple[str, str]] = set()
    for value in _values(types):
        try:
            event_type = catalog.lookup(value)
        except catalog.UnknownEventTypeError as exc:
            errors.setdefault("type", []).append(str(exc))
        else:
            kinds.add((event_type.entity, event_type.change))
    targets: set[tuple[str, str]] = set()
    for value in _values(entities):
        parsed = _parse_entity(value)
        if isinstance(parsed, str):
            errors.setdefault("entity", []).append(parsed)
        else:
            targets.add(parsed)
    if len(targets) > MAX_ENTITY_FILTERS:
        errors.setdefault("entity", []).append(
            f"Ensure there are at most {MAX_ENTITY_FILTERS} entities."
        )
    if errors:
        raise FieldErrors(errors)
    if kinds and targets:
        return {(e, i, c) for e, c in kinds for t, i in targets if t == e}
    if kinds:
        return {(e, "*", c) for e, c in kinds}
    if targets:
        return {(e, i, "*") for e, i in targets}
    return None


def _narrow(wanted: set[Pattern], visible: Mapping[str, EntityView]) -> set[Pattern] | None:
    """``wanted`` restricted to the visible objects; None if that takes too many subjects."""
    narrowed: set[Pattern] = set()
    for entity, entity_id, change in wanted:
        view = visible.get(entity)
        if view is None:
            continue
        if view.ids is None:
            narrowed.add((entity, entity_id, change))
            continue
        ids = view.ids if entity_id == "*" else view.ids & {int(entity_id)}
        narrowed.update((entity, str(i), change) for i in ids)
        narrowed.update((entity, entity_id, c) for c in view.any_id if change in ("*", c))
        if len(narrowed) > MAX_FILTER_SUBJECTS:
            return None
    return narrowed


def build_filter(wanted: set[Pattern] | None, visible: Visibility) -> EventFilter:
    """The filter for what was asked, narrowed server-side to what the user may hear about.

    A user who sees too many objects for one filter subject each gets the entities' wildcards
    instead; the reader's ``keep`` (``Scope.sees_event``) then drops the rest.
    """
    if visible is None:
        return EventFilter(None if wanted is None else _subjects(wanted))
    if wanted is None:
        wanted = {(entity, "*", "*") for entity in visible}
    narrowed = _narrow(wanted, visible)
    if narrowed is None:
        narrowed = {w for w in wanted if w[0] in visible}
    return EventFilter(_subjects(narrowed))


@dataclass(frozen=True)
class FeedEvent:
    sequence: int
    event: CloudEvent
    # Exactly as published: SSE forwards these bytes untouched.
    body: bytes
    # Matching events stored after this one when it was delivered.
    remaining: int


@dataclass(frozen=True)
class StreamBounds:
    first: int
    last: int


async def bounds(js: JetStreamContext) -> StreamBounds:
    state = (await js.stream_info(EVENTS_STREAM)).state
    return StreamBounds(first=state.first_seq, last=state.last_seq)


class EventReader:
    """An ordered, ephemeral pull consumer on RACKSMITH_EVENTS, reading after a sequence.

    It remembers the last stream sequence it handed out; if its consumer disappears (reaped
    while a slow client held the reader, or NATS restarted) or a delivery is skipped, it creates
    a new consumer right after that sequence — so a reader neither skips nor repeats an event.
    Delivery needs no acks: the consumer is this reader's alone.
    """

    def __init__(self, js: JetStreamContext, event_filter: EventFilter, *, after: int) -> None:
        self.js = js
        self.filter = event_filter
        self.start = after + 1
        self.position = after
        # Matching events from ``start`` to the end of the stream, counted at creation.
        self.pending = 0
        self._consumer: str | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._next_delivery = 1

    async def open(self) -> EventReader:
        if self.filter.matches_nothing:
            return self  # no consumer: one without filter subjects would deliver everything
        subjects_ = self.filter.subjects
        config = ConsumerConfig(
            name=f"api-events-{uuid.uuid4().hex}",
            filter_subjects=sorted(subjects_) if subjects_ is not None else None,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.position + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=INACTIVE_THRESHOLD_S,
            mem_storage=True,
            num_replicas=1,
        )
        info = await self.js.add_consumer(EVENTS_STREAM, config)
        self._consumer = info.name
        self.pending = info.num_pending or 0
        self._next_delivery = 1
        self._subscription = await self.js.pull_subscribe_bind(
            consumer=info.name, stream=EVENTS_STREAM
        )
        return self

    async def refilter(self, event_filter: EventFilter, *, after: int) -> None:
        """Continue after stream sequence ``after`` with another filter (what the user may hear
        about changed)."""
        await self.close()
        self.filter = event_filter
        self.position = after
        await self.open()

    async def close(self) -> None:
        """Unsubscribe and delete the consumer; safe to call from a cancelled task."""
        subscription, consumer = self._subscription, self._consumer
        self._subscription = self._consumer = None
        with anyio.CancelScope(shield=True):
            try:
                if subscription is not None:
                    await subscription.unsubscribe()
                if consumer is not None:
                    await self.js.delete_consumer(EVENTS_STREAM, consumer)
            except Exception as exc:  # the inactivity threshold reaps it anyway
                log.info("events.consumer_not_deleted", consumer=consumer, error=repr(exc))

    async def _reopen(self, reason: str) -> None:
        log.info("events.reader_reopened", after=self.position, reason=reason)
        await self.close()
        await self.open()

    async def next_batch(self, wait_s: float, limit: int = FETCH_BATCH) -> list[FeedEvent]:
        """The next matching events in stream order; [] if none arrived within ``wait_s``."""
        if self.filter.matches_nothing:
            await asyncio.sleep(wait_s)
            return []
        reopened = 0
        found: list[FeedEvent]
        while True:
            if self._subscription is None:
                await self.open()
            assert self._subscription is not None
            try:
                messages = await self._subscription.fetch(limit, timeout=wait_s)
            except TimeoutError:
                return []
            except JetStreamError as exc:  # consumer gone: continue after what we handed out
                reason = repr(exc)
                found, complete = [], False
            else:
                if not messages:
                    return []
                found, complete = self._take(messages)
                reason = "delivery skipped"
            if found:
                if not complete:
                    await self._reopen(reason)
                return found
            if not complete:
                reopened += 1
                if reopened == REOPEN_ATTEMPTS:
                    raise JetStreamError(description=f"reading events failed: {reason}")
                await self._reopen(reason)
            # else: only messages that are not CloudEvents; look further.

    def _take(self, messages: list[Msg]) -> tuple[list[FeedEvent], bool]:
        """The events of ``messages`` up to the first skipped delivery; False if one was."""
        found: list[FeedEvent] = []
        for message in messages:
            meta = message.metadata
            if meta.sequence.consumer != self._next_delivery:
                return found, False
            self._next_delivery += 1
            self.position = meta.sequence.stream
            try:
                event = CloudEvent.model_validate_json(message.data)
            except ValidationError:
                log.warning("events.not_a_cloudevent", subject=message.subject, seq=self.position)
                continue
            found.append(
                FeedEvent(
                    sequence=meta.sequence.stream,
                    event=event,
                    body=message.data,
                    remaining=meta.num_pending,
                )
            )
        return found, True

    async def read_before(self, end: int, expected: int) -> list[FeedEvent]:
        """The ``expected`` events from here up to (not including) sequence ``end``, in order.

        ``expected`` comes from the consumers' counts; events published after they were taken
        can inflate it, so reading also stops at ``end``.
        """
        found: list[FeedEvent] = []
        while len(found) < expected:
            batch = await self.next_batch(
                PAGE_FETCH_TIMEOUT_S, min(expected - len(found), FETCH_BATCH)
            )
            if not batch:
                break
            for item in batch:
                if item.sequence >= end:
                    return found
                found.append(item)
        return found


async def sequence_before(js: JetStreamContext, when: datetime) -> int:
    """The last stream sequence stored before ``when`` (0 if none)."""
    probe = await js.add_consumer(
        EVENTS_STREAM,
        ConsumerConfig(
            name=f"api-events-{uuid.uuid4().hex}",
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=when,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=INACTIVE_THRESHOLD_S,
            mem_storage=True,
            num_replicas=1,
        ),
    )
    with anyio.CancelScope(shield=True):
        await js.delete_consumer(EVENTS_STREAM, probe.name or "")
    # A consumer starting at a time reports the sequence before its first delivery as delivered.
    return probe.delivered.stream_seq if probe.delivered else 0


async def _window(
    js: JetStreamContext, event_filter: EventFilter, start: int, end: int, after_end: int, want: int
) -> EventReader:
    """A reader starting in [start, end) whose window up to ``end`` holds about ``want`` matches.

    ``after_end`` is the count of matches from ``end`` on. Starting at ``start`` may cover far
    more matches than wanted (events are dense there), so the start is bisected towards ``end``
    while at least ``want`` matches stay inside.
    """
    reader = await EventReader(js, event_filter, after=start - 1).open()
    upper = end
    try:
        while reader.pending - after_end > 2 * want and upper - reader.start > 1:
            middle = (reader.start + upper) // 2
            probe = await EventReader(js, event_filter, after=middle - 1).open()
            if probe.pending - after_end >= want:
                await reader.close()
                reader = probe
            else:
                await probe.close()
                upper = middle
    except BaseException:
        await reader.close()
        raise
    return reader


async def newest(
    js: JetStreamContext,
    event_filter: EventFilter,
    *,
    before: int | None,
    floor: int,
    count: int,
    keep: Keep,
) -> list[FeedEvent]:
    """Up to ``count`` kept events with sequence in [floor, before), newest first."""
    found: list[FeedEvent] = []
    if event_filter.matches_nothing:
        return found
    stream = await bounds(js)
    end = stream.last + 1 if before is None else min(before, stream.last + 1)
    floor = max(floor, stream.first, 1)
    after_end = 0
    if end <= stream.last:
        counter = await EventReader(js, event_filter, after=end - 1).open()
        after_end = counter.pending
        await counter.close()
    span = count
    while len(found) < count and end > floor:
        reader = await _window(
            js, event_filter, max(floor, end - span), end, after_end, count - len(found)
        )
        try:
            batch = await reader.read_before(end, reader.pending - after_end)
        finally:
            await reader.close()
        found.extend(item for item in reversed(batch) if keep(item.event))
        end, after_end = reader.start, reader.pending
        # Sparse matches (a narrow filter, a user who sees little): look further back at once.
        span *= 2
    return found[:count]


async def oldest_after(
    js: JetStreamContext, event_filter: EventFilter, *, after: int, count: int, keep: Keep
) -> list[FeedEvent]:
    """Up to ``count`` kept events with sequence above ``after``, oldest first."""
    found: list[FeedEvent] = []
    if event_filter.matches_nothing:
        return found
    reader = await EventReader(js, event_filter, after=after).open()
    try:
        left = reader.pending
        while left > 0 and len(found) < count:
            want = min(left, count - len(found), FETCH_BATCH)
            batch = await reader.next_batch(PAGE_FETCH_TIMEOUT_S, want)
            if not batch:
                break
            found.extend(item for item in batch if keep(item.event))
            left = batch[-1].remaining
    finally:
        await reader.close()
    return found[:count]


@dataclass(frozen=True)
class Resume:
    """Where a stream resuming after a client's last sequence continues, and what to tell it."""

    after: int
    # Set when events the client may not have received are gone or unknown.
    lost: dict[str, object] | None


def resume(after: int, stream: StreamBounds) -> Resume:
    if stream.first and after + 1 < stream.first:
        return Resume(
            stream.first - 1,
            {
                "last_event_id": after,
                "first_sequence": stream.first,
                "detail": f"Events {after + 1} to {stream.first - 1} are no longer stored "
                "(retention); continuing with the oldest event still stored.",
            },
        )
    if after > stream.last:
        return Resume(
            stream.last,
            {
                "last_event_id": after,
                "last_sequence": stream.last,
                "detail": f"Event {after} is not in the stream, which ends at {stream.last}; "
                "continuing with new events.",
            },
        )
    return Resume(after, None)
