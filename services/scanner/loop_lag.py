"""Event-loop lag, and timeouts that do not charge it to the network.

A scanner process runs hundreds of TLS handshakes on one event loop; each is CPU work done in a
callback. While the loop is busy, a connection that completed long ago waits in the backlog and
a timer fires late — so a timeout measured in wall-clock time blames the network for the
scanner's own load, and a live BMC is recorded as silent. ``LoopLag`` samples how late the loop
runs its timers; ``LoopLag.wait_for`` gives a timed-out step back the time the loop was stalled
during it, so only the network's silence counts against the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

# Lateness below this is scheduling noise, not a stall.
_NOISE_S = 0.005
# However stalled the loop, a step gets at most this many times its timeout.
_MAX_STRETCH = 10.0


class LoopLag:
    """Samples the running loop: how late a short timer fires is how long the loop was busy."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self._stalled = 0.0  # seconds of lateness seen by completed samples
        self._recent = 0.0  # lateness of the last completed sample
        self._expected = 0.0  # when the sample in progress should wake
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            late = loop.time() - self._expected
            self._recent = late
            if late > _NOISE_S:
                self._stalled += late

    def stalled(self) -> float:
        """Seconds the loop has been stalled since sampling began, the stall in progress too."""
        if self._task is None:
            return 0.0
        pending = asyncio.get_running_loop().time() - self._expected
        return self._stalled + (pending if pending > _NOISE_S else 0.0)

    def recent(self) -> float:
        """How late the loop is running right now (the larger of the last and current sample)."""
        if self._task is None:
            return 0.0
        return max(self._recent, asyncio.get_running_loop().time() - self._expected)

    async def wait_for(self, awaitable: Awaitable[T], timeout: float) -> T:  # noqa: ASYNC109
        """``asyncio.wait_for`` whose deadline moves back by the loop's stalls during the wait.

        Raises ``TimeoutError`` only once ``timeout`` seconds passed while the loop was free to
        notice an answer (or the wait stretched to ``_MAX_STRETCH`` times ``timeout``).
        """
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(awaitable)
        started = loop.time()
        stalled_at_start = self.stalled()
        deadline = started + timeout
        credited = 0.0
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
                if done:
                    return task.result()
                stalled = self.stalled() - stalled_at_start
                limit = started + timeout * _MAX_STRETCH
                if stalled > credited and deadline < limit:
                    deadline = min(limit, deadline + stalled - credited)
                    credited = stalled
                    continue
                raise TimeoutError
        finally:
            if not task.done():
                # Not awaited: waiting here could swallow a cancellation of the caller.
                task.cancel()
                task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
