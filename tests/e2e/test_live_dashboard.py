"""``GET /live?dashboard=1``: the Dashboard summary pushed on the stream (embedded stores).

The summary arrives at once and after each processed request, equals what
``GET /dashboard`` answers for the same moment and zone, and is computed once per
change for every open stream of the same workspace and zone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from e2e.test_http import ANALYTICS, GATEWAY, async_test, envelope, serve
from e2e.test_pages_api import (  # noqa: F401  (stores: fixture)
    get_json,
    next_event,
    pages_app,
    set_timezone,
    stores,
)
from services.composition import Stores
from services.http.context import CONTEXT
from services.http.live import LiveHub
from services.in_process.pipeline import EmbeddedPipeline
from services.runtime.sinks import EmbeddedSink

pytestmark = pytest.mark.e2e
WAIT = 10  # an upper bound for one wait, not a speed target
STREAM = "/v1/workspaces/ws1/live"


def live_app(tmp_path: Path, stores: Stores, read_models: Any = None) -> tuple[Any, LiveHub]:  # noqa: F811
    hub = LiveHub()
    sink = EmbeddedSink(pipeline=EmbeddedPipeline(stores.events, stores.read_models))
    sink.on_processed = hub.publish
    app = pages_app(tmp_path, stores, sink, hub)
    if read_models is not None:
        app[CONTEXT] = replace(app[CONTEXT], read_models=read_models)
    return app, hub


async def dashboard_event(response: Any) -> dict[str, Any]:
    name, data = await asyncio.wait_for(next_event(response.content), WAIT)
    assert name == "dashboard", (name, data)
    return data


async def until(probe: Callable[[], bool]) -> None:
    for _ in range(WAIT * 20):
        if probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@async_test
async def test_the_summary_comes_at_once_and_after_each_change_computed_once_for_all(
        tmp_path: Path, stores: Stores) -> None:  # noqa: F811
    app, hub = live_app(tmp_path, stores)
    zone = "America/Mexico_City"
    async with serve(app) as client:
        streams = []
        for _ in range(3):
            response = await client.get(STREAM, params={"dashboard": "1", "tz": zone},
                                        headers=ANALYTICS)
            assert response.status == 200
            assert (await asyncio.wait_for(next_event(response.content), WAIT))[0] == "ready"
            streams.append(response)
        first = [await dashboard_event(r) for r in streams]
        assert first[0] == first[1] == first[2]
        assert first[0] == await get_json(client, "/v1/workspaces/ws1/dashboard", tz=zone,
                                          now=first[0]["as_of"])
        assert first[0]["tz"] == zone
        feed = hub.feeds.running[("ws1", zone)]
        assert feed.computed == 1  # three viewers, one computation

        utc = await client.get(STREAM, params={"dashboard": "1"}, headers=ANALYTICS)
        await asyncio.wait_for(next_event(utc.content), WAIT)
        assert (await dashboard_event(utc))["tz"] == "UTC"  # another zone, its own feed
        assert set(hub.feeds.running) == {("ws1", zone), ("ws1", "UTC")}

        posted = await client.post("/v1/events", headers=GATEWAY,
                                   json=envelope("message.received", "n1", "new-contact",
                                                 "2026-11-25T12:00:00Z"))
        assert posted.status == 202
        after = [await dashboard_event(r) for r in streams]
        assert all(a["open"]["total"] == first[0]["open"]["total"] + 1 for a in after)
        assert after[0] == after[1] == after[2]
        assert feed.computed == 2
        assert (await dashboard_event(utc))["open"]["total"] == first[0]["open"]["total"] + 1

        for response in (*streams, utc):
            response.close()
        await until(lambda: not hub.feeds.running)  # nobody listens: the feeds stop
        assert hub.subscribers == 0


@async_test
async def test_a_viewer_who_joins_later_gets_the_latest_summary_at_once(
        tmp_path: Path, stores: Stores) -> None:  # noqa: F811
    app, hub = live_app(tmp_path, stores)
    async with serve(app) as client:
        one = await client.get(STREAM, params={"dashboard": "1"}, headers=ANALYTICS)
        await asyncio.wait_for(next_event(one.content), WAIT)
        shown = await dashboard_event(one)
        two = await client.get(STREAM, params={"dashboard": "1"}, headers=ANALYTICS)
        await asyncio.wait_for(next_event(two.content), WAIT)
        assert await dashboard_event(two) == shown
        assert hub.feeds.running[("ws1", "UTC")].computed == 1
        other = await client.post("/v1/events", headers={"Authorization": "Bearer gw-ws2"},
                                  json=envelope("message.received", "x1", "c7", ws="ws2"))
        assert other.status == 202
        waiting = asyncio.create_task(next_event(one.content))
        done, _ = await asyncio.wait({waiting}, timeout=1.0)
        assert not done  # another workspace's change is not ours
        waiting.cancel()
        one.close()
        two.close()


@async_test
async def test_without_tz_the_stream_uses_the_workspace_zone_and_an_explicit_tz_wins(
        tmp_path: Path, stores: Stores) -> None:  # noqa: F811
    app, hub = live_app(tmp_path, stores)
    zone = "Pacific/Auckland"
    async with serve(app) as client:
        await set_timezone(client, zone)
        local = await client.get(STREAM, params={"dashboard": "1"}, headers=ANALYTICS)
        await asyncio.wait_for(next_event(local.content), WAIT)
        shown = await dashboard_event(local)
        assert shown["tz"] == zone
        as_of = datetime.fromisoformat(shown["as_of"].replace("Z", "+00:00"))
        assert shown["today"]["key"] == as_of.astimezone(ZoneInfo(zone)).date().isoformat()
        assert shown == await get_json(client, "/v1/workspaces/ws1/dashboard",
                                       now=shown["as_of"])
        utc = await client.get(STREAM, params={"dashboard": "1", "tz": "UTC"},
                               headers=ANALYTICS)
        await asyncio.wait_for(next_event(utc.content), WAIT)
        assert (await dashboard_event(utc))["tz"] == "UTC"
        assert set(hub.feeds.running) == {("ws1", zone), ("ws1", "UTC")}

        # a conversation opened one second into the local day counts in "today"
        key = shown["today"]["key"]
        midnight = datetime.fromisoformat(key).replace(tzinfo=ZoneInfo(zone))
        early = (midnight + timedelta(seconds=1)).astimezone(UTC)
        posted = await client.post("/v1/events", headers=GATEWAY, json=envelope(
            "message.received", "early", "early-bird", early.strftime("%Y-%m-%dT%H:%M:%SZ")))
        assert posted.status == 202
        after = await dashboard_event(local)
        assert after["today"]["key"] == key
        assert after["today"]["opened"] == shown["today"]["opened"] + 1
        local.close()
        utc.close()


class Flaky:
    """A read model whose open-conversation query fails ``failures`` times."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def conversations(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise OSError("database is away")
        return self.inner.conversations(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@async_test
async def test_a_failed_computation_keeps_the_stream_open_and_is_retried(
        tmp_path: Path, stores: Stores) -> None:  # noqa: F811
    app, _ = live_app(tmp_path, stores, Flaky(stores.read_models, failures=1))
    async with serve(app) as client:
        response = await client.get(STREAM, params={"dashboard": "1"}, headers=ANALYTICS)
        await asyncio.wait_for(next_event(response.content), WAIT)
        assert (await dashboard_event(response))["open"]["total"] > 0  # after the retry
        response.close()


@async_test
async def test_bad_stream_parameters_are_refused_before_streaming(
        tmp_path: Path, stores: Stores) -> None:  # noqa: F811
    app, _ = live_app(tmp_path, stores)
    async with serve(app) as client:
        for params, field in (({"dashboard": "1", "tz": "Mars/Olympus"}, "tz"),
                              ({"dashboard": "yes"}, "dashboard")):
            response = await client.get(STREAM, params=params, headers=ANALYTICS)
            assert response.status == 400
            assert (await response.json())["detail"].startswith(f"{field}:")
