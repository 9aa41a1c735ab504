"""bench.e2e.wait_for: the end of a run is polled finely once the tail has begun."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import e2e


class World:
    def __init__(self) -> None:
        self.checks = 0

    def check(self) -> None:
        self.checks += 1


def run(monkeypatch: pytest.MonkeyPatch, answers: list[bool], finer: Any,
        interval: float = 0.5) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # as bench.e2e calls it
    calls = iter(answers)

    async def probe() -> bool:
        return next(calls)

    world = World()
    asyncio.run(e2e.wait_for(world, probe, 60, interval, "x", finer=finer))  # type: ignore[arg-type]
    assert world.checks == len(slept) + 1
    return slept


def test_coarse_until_the_tail_then_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"polls": 0}

    def finer() -> bool:
        state["polls"] += 1
        return state["polls"] > 2  # the tail begins after the second poll

    slept = run(monkeypatch, [False] * 5 + [True], finer)
    assert slept == [0.5, 0.5, e2e.TAIL_INTERVAL, e2e.TAIL_INTERVAL, e2e.TAIL_INTERVAL]


def test_without_finer_the_interval_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(monkeypatch, [False, False, True], None) == [0.5, 0.5]


def test_a_shorter_interval_is_kept_in_the_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(monkeypatch, [False, True], lambda: True, interval=0.01) == [0.01]


def test_the_end_of_a_run_is_its_last_twentieth_at_most_near_end() -> None:
    assert e2e.near_end(1_000_000) == e2e.NEAR_END == 50_000
    assert e2e.near_end(200_000) == 10_000
    assert e2e.near_end(10_000) == 500
    assert e2e.near_end(0) == 0


def test_a_run_s_topic_names_are_built_once() -> None:
    world = e2e.World("127.0.0.1:1", "postgresql://unused", tag="t1")
    assert world.topics is world.topics  # read per event by the latency publisher
    assert world.topics.gateway.endswith("bencht1")
