"""Issue 9 §3 over HTTP: ``GET /v1/workspaces/{ws}/events/{event_id}`` and ``…/dead-letters``.

Events are posted through ``POST /v1/events`` with the embedded sink (the
in-process pipeline of ``bonychat serve`` without Kafka), then read back with
the analytics token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from services.composition import Stores, embedded_pipeline, open_stores
from services.composition.dead_letters import open_operations
from services.http.operators import attach_operations
from services.runtime.sinks import EmbeddedSink
from tests.e2e.test_http import (
    ANALYTICS,
    GATEWAY,
    app_for,
    async_test,
    envelope,
    error_of,
    make_settings,
    serve,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(make_settings(tmp_path))
    yield opened
    opened.close()


def app(tmp_path: Path, stores: Stores, *, operations: bool = True) -> web.Application:
    settings = make_settings(tmp_path)
    sink = EmbeddedSink(pipeline=embedded_pipeline(stores, settings))
    application = app_for(settings, sink, stores)
    if operations:
        attach_operations(application, open_operations(settings))
    return application


BATCH: list[Any] = [
    envelope("message.received", "e1", "c1"),
    envelope("conversation.close", "e2", "c9"),
    {"event_id": "e3", "workspace_id": "ws1", "type": "message.received"},
    envelope("message.received", "e4", "c2", ws="ws2"),
]


@async_test
async def test_outcome_and_dead_letters_over_http(tmp_path: Path, stores: Stores) -> None:
    async with serve(app(tmp_path, stores)) as client:
        posted = await client.post("/v1/events", json=BATCH[:3], headers=GATEWAY)
        assert posted.status == 202, await posted.text()

        accepted = await client.get("/v1/workspaces/ws1/events/e1", headers=ANALYTICS)
        assert accepted.status == 200, await accepted.text()
        body = await accepted.json()
        assert body["outcome"] == "accepted"
        assert [e["event_type"] for e in body["domain_events"]] == [
            "ConversationOpened", "MessageReceived"]

        rejected = await (await client.get("/v1/workspaces/ws1/events/e2",
                                           headers=ANALYTICS)).json()
        assert (rejected["outcome"], rejected["reason"]) == ("rejected", "no_open_conversation")

        invalid = await (await client.get("/v1/workspaces/ws1/events/e3",
                                          headers=ANALYTICS)).json()
        assert invalid["outcome"] == "invalid" and "field required" in invalid["reason"]
        assert [d["source"] for d in invalid["dead_letters"]] == ["http"]

        await error_of(await client.get("/v1/workspaces/ws1/events/nope", headers=ANALYTICS),
                       404)

        listed = await client.get("/v1/workspaces/ws1/dead-letters", headers=ANALYTICS)
        rows = await listed.json()
        assert [(r["event_id"], r["source"]) for r in rows] == [("e3", "http")]
        assert rows[0]["raw"].startswith("{")
        empty = await client.get("/v1/workspaces/ws1/dead-letters?source=file&since=2000-01-01",
                                 headers=ANALYTICS)
        assert await empty.json() == []
        later = await client.get("/v1/workspaces/ws1/dead-letters?since=2999-01-01T00:00:00Z",
                                 headers=ANALYTICS)
        assert await later.json() == []


@async_test
async def test_operator_routes_need_the_workspace_analytics_token(tmp_path: Path,
                                                                  stores: Stores) -> None:
    async with serve(app(tmp_path, stores)) as client:
        for path in ("/v1/workspaces/ws1/events/e1", "/v1/workspaces/ws1/dead-letters"):
            await error_of(await client.get(path), 401)
            await error_of(await client.get(path, headers=GATEWAY), 401)
            await error_of(await client.get(path.replace("ws1", "ws2"), headers=ANALYTICS),
                           403)
        for query in ("since=yesterday", "source=ftp"):
            await error_of(await client.get(f"/v1/workspaces/ws1/dead-letters?{query}",
                                            headers=ANALYTICS), 400)


@async_test
async def test_a_line_naming_no_workspace_is_not_shown_to_a_workspace(
        tmp_path: Path, stores: Stores) -> None:
    pipeline = embedded_pipeline(stores, make_settings(tmp_path))
    pipeline.process_batch([b"not json", b'{"workspace_id": "ws1"}'])
    async with serve(app(tmp_path, stores)) as client:
        rows = await (await client.get("/v1/workspaces/ws1/dead-letters",
                                       headers=ANALYTICS)).json()
        assert [r["raw"] for r in rows] == ['{"workspace_id": "ws1"}']
        assert [r["source"] for r in rows] == ["file"]


@async_test
async def test_without_operations_the_routes_answer_503(tmp_path: Path, stores: Stores) -> None:
    async with serve(app(tmp_path, stores, operations=False)) as client:
        await error_of(await client.get("/v1/workspaces/ws1/dead-letters", headers=ANALYTICS),
                       503)
