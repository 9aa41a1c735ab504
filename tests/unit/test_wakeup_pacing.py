"""A follower's wake-ups are paced by ``min_interval`` (services/runtime/wakeup.py)."""

from __future__ import annotations

import asyncio
import itertools

from services.runtime.wakeup import Wakeup


def test_wakeups_come_no_sooner_than_the_interval_apart() -> None:
    async def run() -> list[float]:
        wakeup = Wakeup(None, min_interval=0.3)  # polling: returns after 0.1 s at most
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(3):
            await wakeup.wait(stop, 0.05)
            times.append(loop.time())
        return times

    times = asyncio.run(run())
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.3 - 1e-3 for gap in gaps), gaps


def test_the_first_wakeup_and_a_stop_do_not_wait_for_the_interval() -> None:
    async def run() -> tuple[float, float]:
        wakeup = Wakeup(None, min_interval=60)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await wakeup.wait(stop, 0.01)  # nothing before it: no pause
        first = loop.time() - started
        loop.call_later(0.05, stop.set)
        started = loop.time()
        await asyncio.wait_for(wakeup.wait(stop, 0.01), 30)  # the pause ends with stop
        return first, loop.time() - started

    first, stopped = asyncio.run(run())
    assert first < 30 and stopped < 30

