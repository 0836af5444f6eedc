"""How many probes a scanner process keeps in flight, and how that follows its own load.

Two stages, two limits. A TCP connect costs the scanner almost nothing (the kernel does the
work), so thousands can be in flight; a TLS handshake plus the Redfish request is CPU work on
the event loop, and too many at once stall the loop until every timer in it is late. Each limit
is adaptive (additive increase, multiplicative decrease, as TCP does): it starts small, grows by
one per probe that completed while the loop kept up, and halves when the loop runs late or a
step timed out — at most once per stall, so one stall does not collapse it. Starting at the
ceiling instead would admit every handshake of a dense network at once: each would get a sliver
of the loop, and all would run out of time together.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from services.scanner.loop_lag import LoopLag


class AdaptiveLimit:
    """A semaphore whose size moves between ``floor`` and ``ceiling`` with the loop's lag."""

    def __init__(
        self, lag: LoopLag, *, floor: int, ceiling: int, target_lag: float, start: int | None = None
    ) -> None:
        self.lag = lag
        self.floor = max(1, min(floor, ceiling))
        self.ceiling = ceiling
        self.target_lag = target_lag
        self.limit = float(max(self.floor, min(ceiling, start or ceiling)))
        self.in_use = 0
        self.cuts = 0  # how often the limit was halved (tests and logs read it)
        self._last_cut = float("-inf")
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot; a ``TimeoutError`` out of the block counts as congestion."""
        await self.acquire()
        congested = False
        try:
            yield
        except TimeoutError:
            congested = True
            raise
        finally:
            self.release(congested)

    async def acquire(self) -> None:
        while self.in_use >= int(self.limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the wake-up this waiter will not use
                raise
        self.in_use += 1

    def release(self, congested: bool) -> None:
        self.in_use -= 1
        now = asyncio.get_running_loop().time()
        if congested or self.lag.recent() > self.target_lag:
            # One cut per stall: the probes finishing in the same stall saw the same lag.
            if now - self._last_cut > max(self.target_lag, self.lag.recent()):
                self.limit = max(float(self.floor), self.limit / 2)
                self._last_cut = now
                self.cuts += 1
        else:
            self.limit = min(float(self.ceiling), self.limit + 1)
        self._wake()

    def _wake(self) -> None:
        free = int(self.limit) - self.in_use
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


class Backlog:
    """Connections accepted and waiting for a handshake slot.

    A BMC drops a connection that sends no TLS hello for a while, so accepted connections must
    not pile up behind the handshake limit: new connects wait while the backlog holds more than
    ``factor`` times the handshakes in flight. On a sparse network nothing waits here and
    connects run at their own limit.
    """

    def __init__(self, handshakes: AdaptiveLimit, factor: int = 2) -> None:
        self.handshakes = handshakes
        self.factor = factor
        self.waiting = 0
        self._room = asyncio.Condition()

    def _has_room(self) -> bool:
        return self.waiting < self.factor * int(self.handshakes.limit)

    async def room(self) -> None:
        if self._has_room():
            return
        async with self._room:
            await self._room.wait_for(self._has_room)

    @contextlib.asynccontextmanager
    async def queued(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1
            async with self._room:
                self._room.notify_all()


class Pacing:
    """One scanner process's probe limits, shared by every chunk it works on.

    The loop-lag sampler runs only while at least one chunk is being probed.
    """

    def __init__(
        self,
        *,
        connects: int,
        handshakes: int,
        retries: int,
        target_lag: float = 0.1,
    ) -> None:
        self.lag = LoopLag()
        self.connects = AdaptiveLimit(
            self.lag, floor=min(64, connects), ceiling=connects, start=256, target_lag=target_lag
        )
        self.handshakes = AdaptiveLimit(
            self.lag,
            floor=min(4, handshakes),
            ceiling=handshakes,
            start=16,
            target_lag=target_lag,
        )
        self.backlog = Backlog(self.handshakes)
        # The second pass over timed-out addresses runs at a fixed, low concurrency.
        self.retries = asyncio.Semaphore(retries)
        self._users = 0

    @contextlib.asynccontextmanager
    async def handshake(self) -> AsyncIterator[float]:
        """A handshake slot for an accepted connection, which waits in the backlog meanwhile;
        yields how long it waited."""
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        async with self.backlog.queued():
            await self.handshakes.acquire()
        congested = False
        try:
            yield loop.time() - queued_at
        except TimeoutError:
            congested = True
            raise
        finally:
            self.handshakes.release(congested)

    @contextlib.asynccontextmanager
    async def active(self) -> AsyncIterator[Pacing]:
        self._users += 1
        if self._users == 1:
            await self.lag.__aenter__()
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0:
                await self.lag.__aexit__()
