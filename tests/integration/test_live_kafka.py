"""The Dashboard's API on the Kafka runtime: the live stream is fed by PostgreSQL NOTIFY.

An event posted to ``POST /v1/events`` goes through Kafka, the conversation
service and the projections (another process could run each); the read
model's commit notifies ``bonychat_projected`` and the open stream says
``changed``, after which the summary shows the new conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from kafka_fixtures import ServeProcess, World, new_world

pytestmark = pytest.mark.integration
SETTLE = 60  # upper bound of a wait, not a target: typical is well under a second


@pytest.fixture
def served(infra: dict[str, str]) -> Iterator[tuple[World, ServeProcess, int]]:
    world = new_world(infra)
    process = world.serve("ingest,conversation,projections", name="live")
    yield world, process, process.port()
    world.destroy()


async def next_event(stream: aiohttp.StreamReader) -> tuple[str, dict[str, Any]]:
    name, data = "", ""
    while True:
        line = (await stream.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            return name, orjson.loads(data)


def envelope(event_id: str, contact: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "message.received", "workspace_id": "ws_http",
            "contact_id": contact, "occurred_at": "2026-11-25T10:00:00Z",
            "channel": {"type": "webchat"}}


def test_posted_event_reaches_an_open_live_stream(
        served: tuple[World, ServeProcess, int]) -> None:
    _, process, port = served
    base = f"http://127.0.0.1:{port}"
    analytics = {"Authorization": "Bearer an-token"}

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http, \
                http.get(f"{base}/v1/workspaces/ws_http/live", headers=analytics) as live:
                assert live.status == 200
                assert (await asyncio.wait_for(next_event(live.content), SETTLE))[0] == "ready"
                for n in (1, 2):  # a second round: the listener keeps listening
                    posted = await http.post(f"{base}/v1/events",
                                             json=envelope(f"live-{n}", f"c{n}"),
                                             headers={"Authorization": "Bearer gw-token"})
                    assert posted.status == 202, await posted.text()
                    while True:
                        name, _ = await asyncio.wait_for(next_event(live.content), SETTLE)
                        assert name == "changed"
                        async with http.get(f"{base}/v1/workspaces/ws_http/dashboard",
                                            headers=analytics) as answer:
                            summary = await answer.json()
                        if summary["open"]["total"] == n:
                            break  # an earlier batch may have notified first
                    assert summary["open"]["by_channel"] == [{"key": "webchat", "count": n}]

    asyncio.run(scenario())
    assert "LISTEN bonychat_projected failed" not in process.log()
