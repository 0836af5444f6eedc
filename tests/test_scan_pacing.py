"""The scanner's pacing: timeouts that do not charge the event loop's stalls to the network,
and probe limits that shrink while the loop runs late."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.scanner.loop_lag import LoopLag
from services.scanner.pacing import AdaptiveLimit

STALL_S = 0.5


async def _answer_during_a_stall() -> int:
    """Answers 0.1 s in, but the loop only gets to it after a 0.5 s stall (and a hop later)."""
    await asyncio.sleep(0.1)
    await asyncio.sleep(0)
    return 1


def _stall_the_loop() -> None:
    asyncio.get_running_loop().call_later(0.01, time.sleep, STALL_S)


async def test_a_stall_of_the_loop_does_not_count_as_silence() -> None:
    # Control: a plain timeout measured in wall-clock time blames the answer for the stall.
    _stall_the_loop()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_answer_during_a_stall(), 0.2)
    async with LoopLag() as lag:
        await asyncio.sleep(0.05)
        _stall_the_loop()
        assert await lag.wait_for(_answer_during_a_stall(), 0.2) == 1
        assert lag.stalled() >= STALL_S / 2


async def test_silence_still_times_out_across_a_stall() -> None:
    never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    async with LoopLag() as lag:
        await asyncio.sleep(0.05)
        _stall_the_loop()
        with pytest.raises(TimeoutError):
            await lag.wait_for(never, 0.2)
    assert never.cancelled()


async def test_the_limit_halves_on_a_late_loop_and_grows_back() -> None:
    async with LoopLag() as lag:
        limit = AdaptiveLimit(lag, floor=2, ceiling=16, target_lag=0.25)
        async with limit.slot():
            time.sleep(0.6)  # noqa: ASYNC251 - the loop is late while this probe holds its slot
        assert limit.limit == 8 and limit.cuts == 1
        await asyncio.sleep(0.2)
        for _ in range(3):
            async with limit.slot():
                pass
        assert limit.limit == 11


async def test_a_timeout_halves_the_limit_and_waiters_get_the_slots_it_keeps() -> None:
    async with LoopLag() as lag:
        limit = AdaptiveLimit(lag, floor=1, ceiling=2, target_lag=10.0)
        with pytest.raises(TimeoutError):
            async with limit.slot():
                raise TimeoutError
        assert limit.limit == 1
        entered = asyncio.Event()

        async def enter() -> None:
            async with limit.slot():
                entered.set()

        async with limit.slot():
            waiter = asyncio.create_task(enter())
            await asyncio.sleep(0.05)
            assert not entered.is_set()
        await waiter
        assert entered.is_set()
