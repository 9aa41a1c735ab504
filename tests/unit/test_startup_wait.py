"""``Startup.step``: a dependency down at start-up is waited for, never an exit (issue 14)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import psycopg
import pytest

from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import Backoff
from services.runtime.starting import Startup, Unavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, object], str | None]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=b"[]" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get("Retry-After")


def startup(port: int = 0) -> Startup:
    return Startup(Health(), RuntimeMetrics(), asyncio.Event(), host="127.0.0.1", port=port,
                   backoff=Backoff(initial=0.01, maximum=0.02))


def test_waits_while_down_answering_503_then_returns_the_result() -> None:
    async def scenario() -> None:
        start = startup(free_port())
        answers: list[tuple[int, dict[str, object], str | None]] = []
        failures = 0

        async def attempt() -> str:
            nonlocal failures
            if failures < 3:
                failures += 1
                if failures == 3:  # the port answers while it waits
                    answers.append(await asyncio.to_thread(get, start.bound_port, "/healthz"))
                    answers.append(await asyncio.to_thread(get, start.bound_port,
                                                           "/v1/events", "POST"))
                raise psycopg.OperationalError("connection refused")
            return "stores"

        assert await start.step("postgresql", attempt) == "stores"
        assert failures == 3
        (code, body, _), (post_code, post_body, retry_after) = answers
        assert code == 503 and body["ready"] is False and body["starting"] is True
        assert "connection refused" in str(body["down"])
        assert post_code == 503 and retry_after == "1" and "postgresql" in str(post_body)
        assert start.health.dependency_up("postgresql")  # up again once it answered
        await start.done()
        with pytest.raises(OSError):
            await asyncio.to_thread(get, start.bound_port, "/healthz")  # port given back

    asyncio.run(scenario())


def test_a_failure_that_waiting_cannot_fix_is_raised() -> None:
    async def scenario() -> None:
        start = startup()

        async def attempt() -> None:
            raise ValueError("bad setting")

        with pytest.raises(Unavailable, match="bad setting"):
            await start.step("postgresql", attempt)
        assert start.http.runner is None  # never served a waiting page for it

    asyncio.run(scenario())


def test_a_stop_signal_ends_the_wait() -> None:
    async def scenario() -> None:
        start = startup()
        calls = 0

        async def attempt() -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                start.stop.set()
            raise ConnectionError("refused")

        assert await start.step("kafka", attempt) is None
        assert not start.health.dependency_up("kafka")
        await start.done()

    asyncio.run(scenario())


def test_before_waiting_runs_once_before_the_first_wait_and_never_without_one() -> None:
    """serve's hook: its workers launched ahead exit and the collector runs again before
    the process starts waiting (issue 13); a start-up that never waits never calls it."""
    async def scenario() -> None:
        calls: list[bool] = []
        start = startup()

        async def before() -> None:
            calls.append(start.http.runner is None)  # not yet answering 503

        start.before_waiting = before
        failures = 0

        async def attempt() -> str:
            nonlocal failures
            if failures < 3:
                failures += 1
                raise ConnectionError("refused")
            return "stores"

        assert await start.step("postgresql", attempt) == "stores"
        assert await start.step("kafka", attempt) == "stores"
        assert calls == [True]  # once, before the first wait, for both steps
        await start.done()

        quiet: list[bool] = []
        fine = startup()

        async def never() -> None:
            quiet.append(True)

        fine.before_waiting = never

        async def ok() -> str:
            return "producer"

        assert await fine.step("kafka", ok) == "producer"
        assert quiet == []

    asyncio.run(scenario())
