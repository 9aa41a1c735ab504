"""The Kafka runtime's live-update listener holds a ``LISTEN`` connection only while a
stream is open (services/http/live.py, ``listen_projected``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from services.http.live import LiveHub, listen_projected


@dataclass
class Note:
    payload: str


@dataclass
class FakeConnection:
    """What ``listen_projected`` uses of a psycopg ``AsyncConnection``."""

    notes: asyncio.Queue[str]
    executed: list[str] = field(default_factory=list)
    closed: bool = False

    async def __aenter__(self) -> FakeConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def execute(self, query: Any) -> None:
        self.executed.append(query.as_string(None))

    async def notifies(self, timeout: float) -> Any:
        try:
            yield Note(await asyncio.wait_for(self.notes.get(), timeout))
        except TimeoutError:
            return


async def until(condition: Any, limit: float = 10.0) -> None:
    """Wait (an upper bound, not a measurement) until ``condition()`` holds."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.01)


def test_listens_only_while_a_stream_is_open(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        notes: asyncio.Queue[str] = asyncio.Queue()
        connections: list[FakeConnection] = []

        async def connect(**kwargs: Any) -> FakeConnection:
            assert kwargs["autocommit"] is True
            connections.append(FakeConnection(notes))
            return connections[-1]

        monkeypatch.setattr(psycopg.AsyncConnection, "connect", connect)
        hub, stop = LiveHub(), asyncio.Event()
        hub.bind(asyncio.get_running_loop())
        task = asyncio.create_task(listen_projected(hub, {"host": "x"}, stop))
        await asyncio.sleep(0.2)  # no stream: nothing connects, whatever is projected
        assert connections == []

        entry = hub.subscribe("ws1")  # a stream opens: LISTEN, and "maybe changed" at once
        await until(lambda: len(connections) == 1 and not entry[1].empty())
        assert connections[0].executed == ['LISTEN "bonychat_projected"']
        entry[1].get_nowait()
        await notes.put("ws2")  # another workspace: not told
        await notes.put("ws1")
        await until(lambda: not entry[1].empty())
        assert notes.empty()

        hub.unsubscribe(entry)  # the last stream closes: so does the connection
        await until(lambda: connections[0].closed)
        await asyncio.sleep(0.2)
        assert len(connections) == 1

        again = hub.subscribe("ws1")  # and the next stream listens again
        await until(lambda: len(connections) == 2 and not again[1].empty())
        stop.set()
        await asyncio.wait_for(task, 10)
        assert connections[1].closed

    asyncio.run(scenario())


def test_stops_while_no_stream_is_open() -> None:
    async def scenario() -> None:
        hub, stop = LiveHub(), asyncio.Event()
        task = asyncio.create_task(listen_projected(hub, {"host": "unused"}, stop))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)  # returns without ever connecting

    asyncio.run(scenario())
