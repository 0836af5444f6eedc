"""Waiting, bounded, for work to reach its outcome, for endpoints that answer when it is done
(``register/``, power and boot, cancel): the API listens for the entities' final events on NATS
— it still never talks to a BMC — and subscribes before the work is queued, so an outcome cannot
slip past.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from shared.contracts.subjects import EVENT_PREFIX


class OutcomeWatch:
    """Which of the expected entities reached a final state.

    Outcomes are collected from the moment of subscribing, so ids known only after the work was
    created (a new job's) can be expected afterwards without missing a fast outcome.
    """

    def __init__(self) -> None:
        self.finished: set[int] = set()
        self.pending: set[int] = set()
        self._all_done = asyncio.Event()
        self._all_done.set()

    def expect(self, ids: Iterable[int]) -> None:
        self.pending = set(ids) - self.finished
        if self.pending:
            self._all_done.clear()
        else:
            self._all_done.set()

    async def _on_event(self, message: Msg) -> None:
        # Subject: racksmith.evt.<entity>.<id>.<change>
        self.settled(int(message.subject.split(".")[3]))

    def settled(self, entity_id: int) -> None:
        """``entity_id`` reached its outcome (or will have none to wait for)."""
        self.finished.add(entity_id)
        self.pending.discard(entity_id)
        if not self.pending:
            self._all_done.set()

    async def wait(self, seconds: float) -> bool:
        if seconds <= 0:
            return not self.pending
        try:
            async with asyncio.timeout(seconds):
                await self._all_done.wait()
        except TimeoutError:
            return False
        return True


@asynccontextmanager
async def watch_outcomes(
    nats: NatsClient | None, entity: str, final_changes: Iterable[str]
) -> AsyncIterator[OutcomeWatch]:
    """Listen for ``entity``'s final events while the block runs (no NATS: nothing to hear)."""
    watch = OutcomeWatch()
    if nats is None:
        yield watch
        return
    subscriptions = [
        await nats.subscribe(f"{EVENT_PREFIX}.{entity}.*.{change}", cb=watch._on_event)
        for change in final_changes
    ]
    await nats.flush()  # the server knows our interest before any command goes out
    try:
        yield watch
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
