"""Staging events in the database transaction and relaying them to NATS afterwards.

``stage`` attaches the event to the session of the change it describes; the session's commit
writes it, stamped with the commit time (an event's ``time`` is when the change became true, not
when the handler started building it). After the commit, ``relay`` publishes what is pending,
oldest first, which keeps each entity's events in the order their changes committed.

Rows are claimed by deleting them in the transaction that publishes them: a second relay
(another handler, the periodic sweep, another process) waits for that transaction and then finds
them gone, so each event goes out once — also to plain NATS subscribers, which JetStream's
``Nats-Msg-Id`` deduplication does not protect. If publishing
fails, the transaction rolls back and the rows stay for the next relay; a process that dies after
publishing but before committing leaves them too, and the id-based deduplication covers that.

A process relays only the events of the entities its NATS user may publish
(``shared.messaging.permissions``: one owning component per entity, so an entity's events keep
their order); finding rows of other entities, it wakes their owners (``OUTBOX_WAKE``).

With tracing on, a staged row also keeps the trace context of the transaction that committed it
(``traceparent``/``tracestate`` beside the event, as the CloudEvents distributed-tracing extension
names them; the published event is the envelope without them): the relay, in whatever process —
the entity's owner, woken by the process that committed —, publishes the event in that trace,
with the context in the NATS headers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, false, insert, or_
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import catalog
from shared.contracts.events import CloudEvent
from shared.contracts.subjects import EVENT_PREFIX
from shared.core.clock import as_utc, utcnow
from shared.core.db import Database
from shared.core.log import get_logger
from shared.messaging.publish import Publisher
from shared.models.outbox import OutboxEvent
from shared.observability import metrics, tracing

log = get_logger(__name__)

RELAY_BATCH = 500


# Key in ``Session.info`` under which a transaction's staged events wait for its commit.
_STAGED = "racksmith.outbox.staged"
# Transactions of this process that wrote outbox rows: a relay asked for when none did since the
# last one has nothing of ours to publish (the sweep still collects other processes' leftovers).
_writes = 0


def stage(session: AsyncSession, event: CloudEvent) -> None:
    """Write ``event`` with the session's next commit (dropped if it rolls back)."""
    session.sync_session.info.setdefault(_STAGED, []).append(event)


async def withdraw(session: AsyncSession, event: CloudEvent) -> None:
    """Take back a committed event that has not been relayed yet (its change was undone)."""
    await session.exec(delete(OutboxEvent).where(col(OutboxEvent.event_id) == event.id))


@orm_event.listens_for(Session, "before_commit")
def _write_staged(session: Session) -> None:
    # Runs inside the transaction, before its final flush: the rows commit with the change.
    staged: list[CloudEvent] = session.info.pop(_STAGED, [])
    if not staged:
        return
    # Write the changes (and take their row locks) before the outbox rows get their ids: a
    # transaction changing the same entity later then waits for this one to commit before it
    # can number its own events, so outbox order is each entity's commit order.
    session.flush()
    global _writes
    _writes += 1
    committed_at = datetime.now(UTC)
    trace_context = tracing.current_context()
    rows = []
    for event in staged:
        stamped = event.model_copy(update={"time": committed_at})
        rows.append(
            {
                "event_id": stamped.id,
                "subject": stamped.nats_subject,
                "body": stamped.model_dump(mode="json") | trace_context,
                "created_at": utcnow(),
            }
        )
    # One multi-row INSERT, in order (ids follow it): a bulk start stages an event per item,
    # and building an ORM object per row costs more than the rest of the request.
    session.execute(insert(OutboxEvent), rows)


@orm_event.listens_for(Session, "after_rollback")
def _drop_staged(session: Session) -> None:
    session.info.pop(_STAGED, None)


def _of(entities: frozenset[str]) -> ColumnElement[bool]:
    if not entities:
        return false()
    subject = col(OutboxEvent.subject)
    return or_(*(subject.startswith(f"{EVENT_PREFIX}.{e}.") for e in sorted(entities)))


async def relay(db: Database, publisher: Publisher, entities: frozenset[str] | None = None) -> int:
    """Publish every pending event (of ``entities``; None: all); returns how many."""
    published = 0
    mine = _of(entities) if entities is not None else None
    while True:
        async with db.session() as session:
            oldest = select(OutboxEvent.id).order_by(col(OutboxEvent.id)).limit(RELAY_BATCH)
            if mine is not None:
                oldest = oldest.where(mine)
            claimed = (
                await session.exec(
                    delete(OutboxEvent)
                    .where(col(OutboxEvent.id).in_(oldest.scalar_subquery()))
                    .returning(
                        col(OutboxEvent.id), col(OutboxEvent.body), col(OutboxEvent.created_at)
                    )
                )
            ).all()
            if not claimed:
                await session.commit()
                return published
            rows = sorted(claimed, key=lambda r: r[0])
            events = [CloudEvent.model_validate(body) for _, body, _ in rows]
            started = time.perf_counter()
            traced = [(e.nats_subject, e.type, row[1]) for e, row in zip(events, rows, strict=True)]
            with tracing.publishing(traced) as headers:
                await publisher.events(events, headers)
            _observe_relayed(events, [created_at for _, _, created_at in rows], started)
            await session.commit()
            published += len(claimed)
            # A partial batch was everything pending when it was claimed: no second transaction
            # to find the outbox empty.
            if len(claimed) < RELAY_BATCH:
                return published


async def others_pending(db: Database, entities: frozenset[str]) -> bool:
    """Whether the outbox holds events of entities other than ``entities``."""
    async with db.session() as session:
        found = (await session.exec(select(OutboxEvent.id).where(~_of(entities)).limit(1))).first()
        await session.commit()
    return found is not None


def _observe_relayed(events: list[CloudEvent], committed: list[datetime], started: float) -> None:
    metrics.EVENT_PUBLISH_DURATION.observe(time.perf_counter() - started)
    now = datetime.now(UTC)
    for event, committed_at in zip(events, committed, strict=True):
        # The catalog bounds the label; a type it does not list (none in production) is "other".
        metrics.events_published(event.type if event.type in catalog.BY_TYPE else "other").inc()
        metrics.OUTBOX_RELAY_LAG.observe(max(0.0, (now - as_utc(committed_at)).total_seconds()))


class Relayer:
    """The process's way to relay: one relay at a time, shared by everyone who asks meanwhile.

    Every committed request and handler asks for a relay. Run side by side, their relays would
    queue on the same rows (each claims the oldest) and each caller would wait for all the
    others' publishes. Here a caller whose rows were committed before a relay *started* is
    served by that relay and returns when it ends; so a burst of commits costs one or two relays,
    not one each.
    """

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        entities: frozenset[str] | None = None,
        wake_others: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.publisher = publisher
        # What this process may publish (None: everything), and how it asks the owners of the
        # rest to relay.
        self.entities = entities
        self.wake_others = wake_others
        self._lock = asyncio.Lock()
        self._asked = 0  # tickets handed out
        self._covered = 0  # every ticket up to this one was asked before a finished relay began
        self._writes_relayed = -1  # the process's outbox writes a finished relay covered

    async def relay(self, *, sweep: bool = False, woken: bool = False) -> None:
        """Return once every event this process committed before this call has been published
        (with ``sweep``, or ``woken`` by another process that staged some of ours: every pending
        event of ours, whoever committed it)."""
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            if self._covered >= ticket and not (sweep or woken):
                return
            starting_after, writes = self._asked, _writes
            # A relay asked for when this process staged nothing since the last one (a job
            # polling its BMC) costs no transaction: nothing of ours can be pending. A sweep or a
            # wake (rows another process committed) always looks.
            if not (sweep or woken) and writes == self._writes_relayed:
                self._covered = starting_after
                return
            await relay(self.db, self.publisher, self.entities)
            self._covered = starting_after
            self._writes_relayed = writes
        # A woken relay does not wake in turn: whoever staged the rows it found of other
        # entities woke their owners too (else two live processes would wake each other for as
        # long as some owner is down). The sweep wakes again, in case a wake was lost.
        if (
            not woken
            and self.entities is not None
            and self.wake_others is not None
            and await others_pending(self.db, self.entities)
        ):
            await self.wake_others()

    async def sweep_forever(self, interval_s: float = 2.0) -> None:
        """Background safety net: relay what crashed handlers (here or elsewhere) left behind."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.relay(sweep=True)
            except Exception as exc:  # keep sweeping: broker or database may be briefly away
                log.warning("outbox.sweep_failed", error=str(exc))
