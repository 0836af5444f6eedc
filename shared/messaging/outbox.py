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
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts.events import CloudEvent
from shared.core.db import Database
from shared.core.log import get_logger
from shared.messaging.publish import Publisher
from shared.models.outbox import OutboxEvent

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
    for event in staged:
        stamped = event.model_copy(update={"time": committed_at})
        session.add(
            OutboxEvent(
                event_id=stamped.id,
                subject=stamped.nats_subject,
                body=stamped.model_dump(mode="json"),
            )
        )


@orm_event.listens_for(Session, "after_rollback")
def _drop_staged(session: Session) -> None:
    session.info.pop(_STAGED, None)


async def relay(db: Database, publisher: Publisher) -> int:
    """Publish every pending event; returns how many this call published."""
    published = 0
    while True:
        async with db.session() as session:
            oldest = select(OutboxEvent.id).order_by(col(OutboxEvent.id)).limit(RELAY_BATCH)
            claimed = (
                await session.exec(
                    delete(OutboxEvent)
                    .where(col(OutboxEvent.id).in_(oldest.scalar_subquery()))
                    .returning(col(OutboxEvent.id), col(OutboxEvent.body))
                )
            ).all()
            if not claimed:
                await session.commit()
                return published
            await publisher.events(
                [CloudEvent.model_validate(body) for _, body in sorted(claimed, key=lambda r: r[0])]
            )
            await session.commit()
            published += len(claimed)


class Relayer:
    """The process's way to relay: one relay at a time, shared by everyone who asks meanwhile.

    Every committed request and handler asks for a relay. Run side by side, their relays would
    queue on the same rows (each claims the oldest) and each caller would wait for all the
    others' publishes. Here a caller whose rows were committed before a relay *started* is
    served by that relay and returns when it ends; so a burst of commits costs one or two relays,
    not one each.
    """

    def __init__(self, db: Database, publisher: Publisher) -> None:
        self.db = db
        self.publisher = publisher
        self._lock = asyncio.Lock()
        self._asked = 0  # tickets handed out
        self._covered = 0  # every ticket up to this one was asked before a finished relay began
        self._writes_relayed = -1  # the process's outbox writes a finished relay covered

    async def relay(self, *, sweep: bool = False) -> None:
        """Return once every event this process committed before this call has been published
        (with ``sweep``: every pending event, whoever committed it)."""
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            if self._covered >= ticket and not sweep:
                return
            starting_after, writes = self._asked, _writes
            # A command that staged nothing (a job polling its BMC) costs no relay transaction.
            if sweep or writes != self._writes_relayed:
                await relay(self.db, self.publisher)
            self._covered = starting_after
            self._writes_relayed = writes

    async def sweep_forever(self, interval_s: float = 2.0) -> None:
        """Background safety net: relay what crashed handlers (here or elsewhere) left behind."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.relay(sweep=True)
            except Exception as exc:  # keep sweeping: broker or database may be briefly away
                log.warning("outbox.sweep_failed", error=str(exc))
