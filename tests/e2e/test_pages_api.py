"""The API behind the Reports and Dashboard pages, driven over real HTTP (embedded stores).

Dashboard summary, conversation filters / drill-down / pages / CSV, timelines
from the event store, the live stream, and the pages' own routes and headers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from sink_fakes import RecordingSink

from e2e.test_http import (
    ANALYTICS,
    GATEWAY,
    async_test,
    envelope,
    error_of,
    load,
    make_settings,
    serve,
)
from services.cli.main import main as cli_main
from services.composition import Stores, open_stores
from services.http.app import create_app
from services.http.live import LiveHub
from services.in_process.pipeline import EmbeddedPipeline
from services.runtime.sinks import EmbeddedSink

pytestmark = pytest.mark.e2e
XSS = "<img src=x onerror=alert(1)>"
ADMIN = {"Authorization": "Bearer ad-ws1"}


def day_story() -> list[dict[str, Any]]:
    """Two days of ws1: closed, open (assigned and not), one closed by a merge."""
    return [
        envelope("message.received", "e1", "c1", "2026-11-24T10:00:00Z"),
        envelope("conversation.assign", "e2", "c1", "2026-11-24T10:00:30Z",
                 data={"assignee_id": "alice", "team_id": "support"}),
        envelope("conversation.close", "e3", "c1", "2026-11-24T10:01:00Z",
                 data={"summary": XSS, "category": "billing"}),
        envelope("message.received", "e4", "c2", "2026-11-24T23:30:00Z",
                 channel={"type": "telegram"}),
        envelope("conversation.close", "e5", "c2", "2026-11-25T00:30:00Z"),
        envelope("message.received", "e6", "c3", "2026-11-25T09:00:00Z"),
        envelope("conversation.assign", "e7", "c3", "2026-11-25T09:05:00Z",
                 data={"assignee_id": "bob"}),
        envelope("message.received", "e8", "c4", "2026-11-25T10:00:00Z",
                 channel={"type": "telegram"}),
        envelope("message.received", "e9", "c5", "2026-11-25T11:00:00Z"),
        envelope("contact.merge", "e10", "c3", "2026-11-25T11:30:00Z",
                 data={"secondary_contact_id": "c5"}),
        envelope("message.received", "e11", "c9", "2026-11-25T09:00:00Z", ws="ws2"),
    ]


def pages_app(tmp_path: Path, stores: Stores, sink: Any = None,
              live: LiveHub | None = None) -> web.Application:
    return create_app(settings=make_settings(tmp_path, admin="ws1=ad-ws1"),
                      sink=sink or RecordingSink(),
                      read_models=stores.read_models, registry=CollectorRegistry(),
                      events=stores.events, live=live)


@pytest.fixture
def stores(tmp_path: Path) -> Any:
    opened = open_stores(make_settings(tmp_path))
    load(opened, day_story())
    yield opened
    opened.close()


async def set_timezone(client: Any, zone: str) -> None:
    """ws1's ``timezone`` setting, as an admin sets it (CONTRACT §6.1)."""
    put = await client.put("/v1/workspaces/ws1/settings", headers=ADMIN,
                           data=orjson.dumps({"timezone": zone}))
    assert put.status == 200, await put.text()


async def get_json(client: Any, path: str, **params: str) -> Any:
    response = await client.get(path, params=params, headers=ANALYTICS)
    assert response.status == 200, await response.text()
    return await response.json()


# -- auth -----------------------------------------------------------------------------------

@async_test
async def test_every_page_endpoint_needs_the_workspace_analytics_token(
        tmp_path: Path, stores: Stores) -> None:
    paths = ["/v1/workspaces/ws1/dashboard", "/v1/workspaces/ws1/live",
             "/v1/workspaces/ws1/contacts/c1/events",
             "/v1/workspaces/ws1/conversations/x/events"]
    async with serve(pages_app(tmp_path, stores)) as client:
        for path in paths:
            await error_of(await client.get(path), 401)
            await error_of(await client.get(path, headers=GATEWAY), 401)
            await error_of(await client.get(path.replace("ws1", "ws2"), headers=ANALYTICS), 403)


# -- dashboard ------------------------------------------------------------------------------

@async_test
async def test_dashboard_summary_in_utc(tmp_path: Path, stores: Stores) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        body = await get_json(client, "/v1/workspaces/ws1/dashboard",
                              now="2026-11-25T12:00:00Z")
        day = await get_json(client, "/v1/workspaces/ws1/metrics",
                             **{"from": "2026-11-25", "to": "2026-11-25"})
    now = body["open"]
    assert (now["total"], now["unassigned"]) == (2, 1)
    assert now["by_assignee"] == [{"key": "bob", "count": 1}, {"key": "unassigned", "count": 1}]
    assert now["by_channel"] == [{"key": "telegram", "count": 1},
                                 {"key": "whatsapp", "count": 1}]
    assert [r["contact_id"] for r in now["longest_waiting"]] == ["c3", "c4"]
    assert now["longest_waiting"][0]["waiting_seconds"] == 3 * 3600
    assert body["today"] == {**day["total"], "key": "2026-11-25"}
    assert (body["today"]["opened"], body["today"]["closed"]) == (3, 2)
    by_hour = {h["hour"]: (h["opened"], h["closed"]) for h in body["hourly"]
               if h["opened"] or h["closed"]}
    assert by_hour == {0: (0, 1), 9: (1, 0), 10: (1, 0), 11: (1, 1)}
    assert body["as_of"] == "2026-11-25T12:00:00Z" and body["tz"] == "UTC"


@async_test
async def test_dashboard_today_follows_the_time_zone(tmp_path: Path, stores: Stores) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        body = await get_json(client, "/v1/workspaces/ws1/dashboard",
                              now="2026-11-25T12:00:00Z", tz="America/New_York")
        await error_of(await client.get("/v1/workspaces/ws1/dashboard", params={"tz": "Mars"},
                                        headers=ANALYTICS), 400)
        await error_of(await client.get("/v1/workspaces/ws1/dashboard",
                                        params={"now": "yesterday"}, headers=ANALYTICS), 400)
    assert body["today"]["key"] == "2026-11-25"
    assert (body["today"]["opened"], body["today"]["closed"]) == (3, 1)  # c2 closed on the 24th
    assert sum(h["closed"] for h in body["hourly"]) == 1
    assert next(h for h in body["hourly"] if h["closed"])["hour"] == 6  # 11:30Z = 06:30 EST


@async_test
async def test_dashboard_without_tz_uses_the_workspace_zone(
        tmp_path: Path, stores: Stores) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        await set_timezone(client, "Pacific/Auckland")
        body = await get_json(client, "/v1/workspaces/ws1/dashboard",
                              now="2026-11-25T12:00:00Z")  # 01:00 on the 26th in Auckland
        empty = await get_json(client, "/v1/workspaces/ws1/dashboard",
                               now="2026-11-25T12:00:00Z", tz="")  # empty = absent
        day = await get_json(client, "/v1/workspaces/ws1/metrics",
                             **{"from": "2026-11-26", "to": "2026-11-26"})
        utc = await get_json(client, "/v1/workspaces/ws1/dashboard",
                             now="2026-11-25T12:00:00Z", tz="UTC")  # an explicit tz wins
    assert body["tz"] == day["tz"] == "Pacific/Auckland"
    assert empty == body
    # the local day 26 Nov is 11:00Z on the 25th onwards: c5 opened at 11:00Z and was
    # closed by the merge at 11:30Z; c2, c3, c4 opened earlier (UTC's today has them)
    assert body["today"] == {**day["total"], "key": "2026-11-26"}
    assert (body["today"]["opened"], body["today"]["closed"]) == (1, 1)
    assert [(h["hour"], h["opened"], h["closed"]) for h in body["hourly"]
            if h["opened"] or h["closed"]] == [(0, 1, 1)]
    assert body["open"]["total"] == 2  # open now does not depend on the zone
    assert utc["tz"] == "UTC" and utc["today"]["key"] == "2026-11-25"
    assert (utc["today"]["opened"], utc["today"]["closed"]) == (3, 2)


# -- conversations: filters, drill-down, pages, CSV ---------------------------------------

@pytest.mark.parametrize("params", [
    {}, {"group_by": "channel"}, {"group_by": "closed_by", "tz": "Asia/Tokyo"},
    {"group_by": "assignee"}, {"group_by": "team"}, {"group_by": "opened_by"},
    {"group_by": "week", "from": "2026-11-25"}, {"to": "2026-11-24", "tz": "America/New_York"},
    {"group_by": "month", "tz": "Pacific/Kiritimati"}, {"group_by": "day", "tz": "Pacific/Niue"},
])
@async_test
async def test_drill_down_lists_exactly_the_conversations_of_each_number(
        params: dict[str, str], tmp_path: Path, stores: Stores) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        metrics = await get_json(client, "/v1/workspaces/ws1/metrics", **params)
        bucket = {k: v for k, v in params.items() if k != "group_by"}
        group_by = metrics["group_by"]
        for row in metrics["rows"]:
            for measure, expected in (("opened", row["opened"]), ("closed", row["closed"]),
                                      ("resolved", row["resolution_seconds"]["count"])):
                if expected is None:
                    continue
                found = await get_json(client, "/v1/workspaces/ws1/conversations",
                                       measure=measure, group_by=group_by, key=row["key"],
                                       **bucket)
                assert len(found) == expected, (measure, row)
        total = metrics["total"]
        for measure, expected in (("opened", total["opened"]), ("closed", total["closed"]),
                                  ("resolved", total["resolution_seconds"]["count"])):
            found = await get_json(client, "/v1/workspaces/ws1/conversations",
                                   measure=measure, **bucket)
            assert len(found) == expected, measure


@async_test
async def test_conversation_filters_and_pages(tmp_path: Path, stores: Stores) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        every = await get_json(client, "/v1/workspaces/ws1/conversations")
        assert [r["contact_id"] for r in every] == ["c1", "c2", "c3", "c4", "c5"]
        telegram = await get_json(client, "/v1/workspaces/ws1/conversations", channel="telegram")
        assert [r["contact_id"] for r in telegram] == ["c2", "c4"]
        open_unassigned = await get_json(client, "/v1/workspaces/ws1/conversations",
                                         status="open", assignee="unassigned")
        assert [r["contact_id"] for r in open_unassigned] == ["c4"]
        merged = await get_json(client, "/v1/workspaces/ws1/conversations", closed_by="merge")
        assert [r["contact_id"] for r in merged] == ["c5"]
        response = await client.get("/v1/workspaces/ws1/conversations",
                                    params={"limit": "2", "offset": "1"}, headers=ANALYTICS)
        assert response.headers["X-Total-Count"] == "5"
        assert [r["contact_id"] for r in await response.json()] == ["c2", "c3"]
        for bad in ({"limit": "0"}, {"limit": "1001"}, {"offset": "-1"}, {"measure": "x"},
                    {"group_by": "day"}, {"measure": "opened", "group_by": "day"},
                    {"measure": "opened", "group_by": "hour", "key": "1"},
                    {"format": "xml"}, {"measure": "opened", "from": "25.11.2026"}):
            await error_of(await client.get("/v1/workspaces/ws1/conversations", params=bad,
                                            headers=ANALYTICS), 400)


@pytest.mark.parametrize("params", [
    {"group_by": "day"}, {"group_by": "channel", "tz": "Asia/Tokyo"},
    {"group_by": "week", "from": "2026-11-25"}])
@async_test
async def test_metrics_csv_equals_the_cli(params: dict[str, str], tmp_path: Path,
                                          stores: Stores,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        response = await client.get("/v1/workspaces/ws1/metrics",
                                    params={**params, "format": "csv"}, headers=ANALYTICS)
        assert response.status == 200 and response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        served = await response.text()
    argv = ["metrics", "--workspace", "ws1", "--format", "csv",
            "--database-url", str(tmp_path / "bonychat.db")]
    for key, value in params.items():
        argv += [f"--{key.replace('_', '-')}", value]
    capsys.readouterr()
    assert cli_main(argv) == 0
    assert served == capsys.readouterr().out
    assert served.count("\n") >= 2


@async_test
async def test_conversations_csv_equals_the_cli(tmp_path: Path, stores: Stores,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        response = await client.get("/v1/workspaces/ws1/conversations",
                                    params={"format": "csv"}, headers=ANALYTICS)
        served = await response.text()
    capsys.readouterr()
    assert cli_main(["conversations", "--workspace", "ws1", "--format", "csv",
                     "--database-url", str(tmp_path / "bonychat.db")]) == 0
    assert served == capsys.readouterr().out
    assert XSS in served


# -- timelines ------------------------------------------------------------------------------

@async_test
async def test_timeline_shows_the_merge_that_closed_a_conversation(
        tmp_path: Path, stores: Stores) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        (merged,) = await get_json(client, "/v1/workspaces/ws1/conversations", contact="c5")
        body = await get_json(
            client, f"/v1/workspaces/ws1/conversations/{merged['conversation_id']}/events")
        assert body["conversation"] == merged
        kinds = [e["event_type"] for e in body["events"]]
        assert kinds == ["ConversationOpened", "MessageReceived", "ConversationClosed",
                         "ContactMerged"]
        assert body["events"][2]["closed_by"] == "merge"
        assert body["events"][3]["primary_contact_id"] == "c3"
        contact = await get_json(client, "/v1/workspaces/ws1/contacts/c1/events")
        assert [e["aggregate_version"] for e in contact["events"]] == [1, 2, 3, 4]
        assert contact["events"][-1]["summary"] == XSS
        unknown = await client.get("/v1/workspaces/ws1/conversations/nope/events",
                                   headers=ANALYTICS)
        await error_of(unknown, 404)
        (other,) = [r for r in await get_json(client, "/v1/workspaces/ws1/conversations")
                    if r["contact_id"] == "c3"]
        assert (await get_json(client, f"/v1/workspaces/ws1/conversations/"
                                       f"{other['conversation_id']}/events"))["events"]


@async_test
async def test_timeline_of_another_workspace_conversation_is_404(
        tmp_path: Path, stores: Stores) -> None:
    ws2 = stores.read_models.conversations("ws2")[0].conversation_id
    async with serve(pages_app(tmp_path, stores)) as client:
        await error_of(await client.get(f"/v1/workspaces/ws1/conversations/{ws2}/events",
                                        headers=ANALYTICS), 404)


# -- live -----------------------------------------------------------------------------------

async def next_event(stream: Any) -> tuple[str, dict[str, Any]]:
    """The next ``event:``/``data:`` pair of an SSE stream (comments skipped)."""
    name, data = "", ""
    while True:
        line = (await stream.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            return name, orjson.loads(data)


@async_test
async def test_live_stream_tells_of_processed_events_of_its_workspace_only(
        tmp_path: Path, stores: Stores) -> None:
    hub = LiveHub()
    sink = EmbeddedSink(pipeline=EmbeddedPipeline(stores.events, stores.read_models))
    sink.on_processed = hub.publish
    async with serve(pages_app(tmp_path, stores, sink, hub)) as client:
        response = await client.get("/v1/workspaces/ws1/live", headers=ANALYTICS)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert (await asyncio.wait_for(next_event(response.content), 5))[0] == "ready"
        other = envelope("message.received", "x1", "c7", "2026-11-25T12:00:00Z", ws="ws2")
        posted = await client.post("/v1/events", json=other,
                                   headers={"Authorization": "Bearer gw-ws2"})
        assert posted.status == 202
        waiting = asyncio.create_task(next_event(response.content))
        done, _ = await asyncio.wait({waiting}, timeout=1.0)
        assert not done  # another workspace's change is not ours
        mine = envelope("message.received", "x2", "c8", "2026-11-25T12:00:00Z")
        assert (await client.post("/v1/events", json=mine, headers=GATEWAY)).status == 202
        name, data = await asyncio.wait_for(waiting, 5)
        assert (name, data["workspace_id"]) == ("changed", "ws1")
        rows = await get_json(client, "/v1/workspaces/ws1/conversations", contact="c8")
        assert len(rows) == 1
        response.close()
# -- the pages ------------------------------------------------------------------------------

@async_test
async def test_pages_are_served_with_a_strict_content_security_policy(
        tmp_path: Path, stores: Stores) -> None:
    async with serve(pages_app(tmp_path, stores)) as client:
        home = await client.get("/", allow_redirects=False)
        assert home.status == 302 and home.headers["Location"] == "/dashboard"
        for path in ("/dashboard", "/reports"):
            page = await client.get(path)
            assert page.status == 200 and page.content_type == "text/html"
            csp = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            html = await page.text()
            assert "<script>" not in html and "onclick" not in html and "style=" not in html
            for asset in ("/static/app.js", "/static/vendor/chart.umd.min.js",
                          "/static/pages.css"):
                assert asset in html
                assert (await client.get(asset)).status == 200
        api = await client.get("/v1/workspaces/ws1/dashboard", headers=ANALYTICS)
        assert api.headers["X-Content-Type-Options"] == "nosniff"

