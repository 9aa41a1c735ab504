"""The HTTP surface of CONTRACT §5, driven through a real aiohttp server.

pytest-aiohttp is not a dependency: each test is a coroutine run by
``asyncio.run`` (see :func:`async_test`) with aiohttp's own TestServer/TestClient.
Query tests use the real SQLite stores filled by the embedded pipeline.
"""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from sink_fakes import RecordingSink

from schemas.commands import CommandBase
from services.cli.main import main as cli_main
from services.composition import Stores, open_stores
from services.http.app import create_app
from services.http.context import HealthCheck
from services.http.ports import EventSink
from services.http.post_events import MAX_BODY_BYTES
from services.in_process.pipeline import EmbeddedPipeline
from services.ingest.domain.normalise import Invalid
from services.projections.domain.metrics import MetricsQuery, compute
from services.settings import Settings

pytestmark = pytest.mark.e2e

GATEWAY = {"Authorization": "Bearer gw-ws1"}
ANALYTICS = {"Authorization": "Bearer an-ws1"}


def async_test(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test in a fresh event loop (fixtures still work)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


def make_settings(tmp_path: Path, *, gateway: str = "ws1=gw-ws1,ws2=gw-ws2",
                  analytics: str = "ws1=an-ws1,ws2=an-ws2", admin: str = "") -> Settings:
    return Settings(database_url=str(tmp_path / "bonychat.db"), gateway_tokens=gateway,
                    analytics_tokens=analytics, admin_tokens=admin, gateway_tokens_file=None,
                    analytics_tokens_file=None, admin_tokens_file=None)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(make_settings(tmp_path))
    yield opened
    opened.close()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def app_for(settings: Settings, sink: EventSink, stores: Stores,
            health: HealthCheck | None = None) -> web.Application:
    return create_app(settings=settings, sink=sink, read_models=stores.read_models,
                      registry=CollectorRegistry(), health=health)


def envelope(kind: str, event_id: str, contact: str = "c1", at: str = "2026-11-24T10:00:00Z",
             ws: str = "ws1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": event_id, "type": kind, "workspace_id": ws,
                            "contact_id": contact, "occurred_at": at}
    if kind == "message.received":
        body["channel"] = {"type": "whatsapp"}
    if kind in ("conversation.close", "conversation.open", "conversation.assign"):
        body["actor"] = {"type": "user", "id": "agent-1"}
    body.update(fields)
    return body


def story() -> list[dict[str, Any]]:
    """Three conversations over two days in ws1, one in ws2."""
    return [
        envelope("message.received", "e1", "c1", "2026-11-24T10:00:00Z"),
        envelope("conversation.assign", "e2", "c1", "2026-11-24T10:00:30Z",
                 data={"assignee_id": "alice", "team_id": "support"}),
        envelope("conversation.close", "e3", "c1", "2026-11-24T10:01:00Z"),
        envelope("message.received", "e4", "c2", "2026-11-24T23:30:00Z",
                 channel={"type": "telegram"}),
        envelope("conversation.close", "e5", "c2", "2026-11-25T00:30:00Z"),
        envelope("message.received", "e6", "c3", "2026-11-25T09:00:00Z"),
        envelope("message.received", "e7", "c9", "2026-11-25T09:00:00Z", ws="ws2"),
    ]


def load(stores: Stores, envelopes: list[dict[str, Any]]) -> None:
    EmbeddedPipeline(stores.events, stores.read_models).run(orjson.dumps(e) for e in envelopes)


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    return body


# -- authentication -------------------------------------------------------------------------

@async_test
async def test_ingest_without_token_is_401(tmp_path: Path, sink: RecordingSink,
                                           stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        for headers in ({}, {"Authorization": "Basic Z3c6d3M="}, {"Authorization": "Bearer "}):
            response = await client.post("/v1/events", json=envelope("message.received", "e1"),
                                          headers=headers)
            assert (await error_of(response, 401))["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sink.items == []


@async_test
async def test_ingest_with_unknown_token_is_401(tmp_path: Path, sink: RecordingSink,
                                                stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        for token in ("nope", "an-ws1"):  # an analytics token cannot post events
            response = await client.post("/v1/events", json=envelope("message.received", "e1"),
                                         headers={"Authorization": f"Bearer {token}"})
            await error_of(response, 401)
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert sink.items == []


@async_test
async def test_ingest_without_configured_gateway_tokens_refuses_everything(
        tmp_path: Path, sink: RecordingSink, stores: Stores) -> None:
    settings = make_settings(tmp_path, gateway="")
    async with serve(app_for(settings, sink, stores)) as client:
        for headers in ({}, GATEWAY, {"Authorization": "Bearer "}):
            response = await client.post("/v1/events", json=envelope("message.received", "e1"),
                                         headers=headers)
            body = await error_of(response, 401)
        assert "BONYCHAT_GATEWAY_TOKENS" in body["detail"]
    assert sink.items == []


@async_test
async def test_query_auth(tmp_path: Path, sink: RecordingSink, stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        for path in ("/v1/workspaces/ws1/metrics", "/v1/workspaces/ws1/conversations"):
            await error_of(await client.get(path), 401)
            await error_of(await client.get(path, headers=GATEWAY), 401)
            other = await client.get(path.replace("ws1", "ws2"), headers=ANALYTICS)
            assert (await error_of(other, 403))["error"] == "forbidden"
            assert (await client.get(path, headers=ANALYTICS)).status == 200
    async with serve(app_for(make_settings(tmp_path, analytics=""), sink, stores)) as client:
        await error_of(await client.get("/v1/workspaces/ws1/metrics", headers=ANALYTICS), 401)


@async_test
async def test_ingest_for_another_workspace_is_403_and_submits_nothing(
        tmp_path: Path, sink: RecordingSink, stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        response = await client.post("/v1/events", headers=GATEWAY,
                                     json=envelope("message.received", "e1", ws="ws2"))
        await error_of(response, 403)
        mixed = [envelope("message.received", "e1"), {"workspace_id": "ws2", "junk": 1}]
        body = await error_of(await client.post("/v1/events", json=mixed, headers=GATEWAY), 403)
        assert "item 1" in body["detail"]
    assert sink.items == []


# -- body limits and shape ----------------------------------------------------------------

@async_test
async def test_body_over_one_mebibyte_is_413(tmp_path: Path, sink: RecordingSink,
                                             stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        item = orjson.dumps(envelope("message.received", "e1"))
        exact = b"[" + item + b" " * (MAX_BODY_BYTES - len(item) - 2) + b"]"
        assert len(exact) == MAX_BODY_BYTES
        response = await client.post("/v1/events", data=io.BytesIO(exact), headers=GATEWAY)
        assert response.status == 202, await response.text()

        over = exact + b" "
        response = await client.post("/v1/events", data=io.BytesIO(over), headers=GATEWAY)
        assert (await error_of(response, 413))["error"] == "payload_too_large"
        assert response.request_info.headers["Content-Length"] == str(len(over))

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: checked while read
            for start in range(0, len(over), 65536):
                yield over[start:start + 65536]

        response = await client.post("/v1/events", data=chunked(), headers=GATEWAY)
        assert "Content-Length" not in response.request_info.headers
        await error_of(response, 413)

        response = await client.post("/v1/events", data=io.BytesIO(over), headers=GATEWAY,
                                     expect100=True)  # refused before the upload
        await error_of(response, 413)
        response = await client.post("/v1/events", data=io.BytesIO(exact), headers=GATEWAY,
                                     expect100=True)
        assert response.status == 202
    assert len(sink.batches) == 2


@async_test
async def test_body_with_a_byte_order_mark(tmp_path: Path, sink: RecordingSink,
                                           stores: Stores) -> None:
    """A leading UTF-8 BOM is skipped (as `bonychat import` does); one inside is not JSON."""
    one = orjson.dumps(envelope("message.received", "bom1"))
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        response = await client.post("/v1/events", data=b"\xef\xbb\xbf" + one, headers=GATEWAY)
        assert response.status == 202
        assert (await response.json())["accepted"] == 1
        response = await client.post("/v1/events", data=b"[" + b"\xef\xbb\xbf" + one + b"]",
                                     headers=GATEWAY)
        await error_of(response, 400)
    assert [item.event_id for item in sink.items] == ["bom1"]


@async_test
async def test_bad_bodies_are_400(tmp_path: Path, sink: RecordingSink, stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        for data in (b'{"event_id": ', b"", b"\xff\xfe", b"42", b'"text"', b"null", b"[]",
                     b"  [ ]  "):
            response = await client.post("/v1/events", data=data, headers=GATEWAY)
            body = await error_of(response, 400)
            assert body["error"] == "bad_request"
        response = await client.post("/v1/events", data=b"{oops}", headers=GATEWAY)
        assert (await response.json())["detail"].startswith("malformed JSON")
    assert sink.items == []


# -- ingest results ---------------------------------------------------------------------------

@async_test
async def test_batch_with_invalid_items(tmp_path: Path, sink: RecordingSink,
                                        stores: Stores) -> None:
    no_offset = envelope("message.received", "e2", at="2026-11-24T10:00:00")
    raw_items = [
        orjson.dumps(envelope("message.received", "e1")).decode(),
        orjson.dumps(no_offset).decode(),
        '  {"type": "teleport",  "workspace_id": "ws1"}',
        "17",
        orjson.dumps(envelope("conversation.close", "e3")).decode(),
    ]
    body = "[" + ",\n".join(raw_items) + "]"
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        response = await client.post("/v1/events", data=body, headers=GATEWAY)
        assert response.status == 202
        result = await response.json()
    assert result["accepted"] == 2 and result["invalid"] == 3
    statuses = [(i["index"], i["event_id"], i["status"]) for i in result["items"]]
    assert statuses == [(0, "e1", "accepted"), (1, "e2", "invalid"), (2, None, "invalid"),
                        (3, None, "invalid"), (4, "e3", "accepted")]
    reasons = [i.get("reason") for i in result["items"]]
    assert "no UTC offset" in reasons[1]
    assert "type" in reasons[2] and "envelope must be a JSON object" in reasons[3]

    assert len(sink.batches) == 1
    submitted = sink.items
    assert [type(i) is Invalid for i in submitted] == [False, True, True, True, False]
    assert isinstance(submitted[0], CommandBase) and submitted[0].event_id == "e1"
    invalid = [i for i in submitted if isinstance(i, Invalid)]
    assert [i.raw for i in invalid] == [raw_items[1], raw_items[2].strip(), "17"]
    assert [i.reason for i in invalid] == reasons[1:4]


@async_test
async def test_single_object_body(tmp_path: Path, sink: RecordingSink, stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        response = await client.post("/v1/events", json=envelope("message.received", "e1"),
                                     headers=GATEWAY)
        assert response.status == 202
        assert await response.json() == {
            "accepted": 1, "invalid": 0,
            "items": [{"index": 0, "event_id": "e1", "status": "accepted"}]}

        broken = envelope("conversation.close", "e2")
        del broken["actor"]
        response = await client.post("/v1/events", data=orjson.dumps(broken), headers=GATEWAY)
        assert response.status == 202  # all invalid: still recorded (dead letters)
        result = await response.json()
    assert result["accepted"] == 0 and result["invalid"] == 1
    assert result["items"] == [{"index": 0, "event_id": "e2", "status": "invalid",
                                "reason": "actor is required for conversation.close"}]
    assert isinstance(sink.items[1], Invalid) and sink.items[1].raw == orjson.dumps(broken).decode()


@async_test
async def test_unavailable_sink_is_503(tmp_path: Path, stores: Stores) -> None:
    sink = RecordingSink(unavailable=True)
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        response = await client.post("/v1/events", json=envelope("message.received", "e1"),
                                     headers=GATEWAY)
        assert (await error_of(response, 503))["error"] == "unavailable"
        assert response.headers["Retry-After"]


class PipelineSink:
    """The in-process pipeline behind the sink port (what the embedded runtime does)."""

    def __init__(self, stores: Stores) -> None:
        self.pipeline = EmbeddedPipeline(stores.events, stores.read_models)
        self.pipeline.catch_up()

    async def submit(self, items: list[CommandBase | Invalid]) -> None:
        def process() -> None:
            self.pipeline.uow.process(items, source="http")
            self.pipeline.catch_up()

        await asyncio.to_thread(process)


@async_test
async def test_posted_events_show_up_in_queries(tmp_path: Path, stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), PipelineSink(stores), stores)) as client:
        batch = [e for e in story() if e["workspace_id"] == "ws1"]
        response = await client.post("/v1/events", json=[*batch, {"bad": True}],
                                     headers=GATEWAY)
        assert (await response.json())["accepted"] == len(batch)
        rows = await (await client.get("/v1/workspaces/ws1/conversations",
                                       headers=ANALYTICS)).json()
    assert [r["contact_id"] for r in rows] == ["c1", "c2", "c3"]
    assert [r["status"] for r in rows] == ["closed", "closed", "open"]


# -- queries ----------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    {}, {"group_by": "week"}, {"group_by": "month"}, {"group_by": "channel"},
    {"group_by": "assignee"}, {"group_by": "closed_by", "tz": "Asia/Tokyo"},
    {"from": "2026-11-25"}, {"to": "2026-11-24", "tz": "America/New_York"},
    {"group_by": "", "from": "", "to": "", "tz": ""},
])
@async_test
async def test_metrics_equal_compute_and_cli(params: dict[str, str], tmp_path: Path,
                                             sink: RecordingSink, stores: Stores,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    load(stores, story())
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        response = await client.get("/v1/workspaces/ws1/metrics", params=params,
                                    headers=ANALYTICS)
        assert response.status == 200 and response.content_type == "application/json"
        body = await response.json()
    given = {k: v for k, v in params.items() if v}
    query = MetricsQuery("ws1", given.get("group_by", "day"), given.get("tz", "UTC"),
                         *(date_of(given.get(k)) for k in ("from", "to")))
    assert body == compute(query, stores.read_models.facts("ws1"))
    argv = ["metrics", "--workspace", "ws1", "--format", "json",
            "--database-url", str(tmp_path / "bonychat.db")]
    for key, flag in (("group_by", "--group-by"), ("from", "--from"), ("to", "--to"),
                      ("tz", "--tz")):
        if key in given:
            argv += [flag, given[key]]
    capsys.readouterr()
    assert cli_main(argv) == 0
    assert body == orjson.loads(capsys.readouterr().out)


def date_of(text: str | None) -> Any:
    from datetime import date

    return date.fromisoformat(text) if text else None


@async_test
async def test_conversations_equal_public_rows(tmp_path: Path, sink: RecordingSink,
                                               stores: Stores) -> None:
    load(stores, story())
    cases = [({}, None, None), ({"status": "open"}, None, "open"),
             ({"status": "closed", "contact": "c2"}, "c2", "closed"),
             ({"contact": "nobody"}, "nobody", None)]
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        for params, contact, status in cases:
            response = await client.get("/v1/workspaces/ws1/conversations", params=params,
                                        headers=ANALYTICS)
            assert response.status == 200
            expected = [r.public() for r in stores.read_models.conversations("ws1", contact,
                                                                              status)]
            assert await response.json() == expected
    assert len(expected) == 0 and len(stores.read_models.conversations("ws1")) == 3


@async_test
async def test_durations_are_rounded_to_three_decimals(tmp_path: Path, sink: RecordingSink,
                                                      stores: Stores) -> None:
    closes = ["2026-11-24T10:00:00.1Z", "2026-11-24T10:00:00.2Z", "2026-11-24T10:00:01.0004Z"]
    load(stores, [envelope("message.received", f"o{n}", f"r{n}") for n in range(3)]
         + [envelope("conversation.close", f"x{n}", f"r{n}", at) for n, at in enumerate(closes)])
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        body = await (await client.get("/v1/workspaces/ws1/metrics", headers=ANALYTICS)).json()
        rows = await (await client.get("/v1/workspaces/ws1/conversations",
                                       headers=ANALYTICS)).json()
    assert body["total"]["resolution_seconds"] == {
        "count": 3, "avg": 0.433, "p50": 0.2, "p90": 0.84, "min": 0.1, "max": 1.0}
    assert sorted(r["resolution_seconds"] for r in rows) == [0.1, 0.2, 1.0]


@async_test
async def test_bad_query_parameters_are_400(tmp_path: Path, sink: RecordingSink,
                                            stores: Stores) -> None:
    cases = [
        ("metrics", {"group_by": "hour"}, "group_by"),
        ("metrics", {"from": "2026-13-01"}, "not a valid calendar date"),
        ("metrics", {"to": "24-11-2026"}, "expected YYYY-MM-DD"),
        ("metrics", {"tz": "Mars/Olympus_Mons"}, "unknown time zone"),
        ("metrics", {"tz": "../etc/passwd"}, "unknown time zone"),
        ("conversations", {"status": "pending"}, "status"),
    ]
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        for endpoint, params, words in cases:
            response = await client.get(f"/v1/workspaces/ws1/{endpoint}", params=params,
                                        headers=ANALYTICS)
            assert words in (await error_of(response, 400))["detail"]


# -- operations ---------------------------------------------------------------------------

@async_test
async def test_prometheus_metrics_count_requests(tmp_path: Path, sink: RecordingSink,
                                                 stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        await client.post("/v1/events", json=envelope("message.received", "e1"),
                          headers=GATEWAY)
        await client.post("/v1/events", json={})
        await client.get("/v1/workspaces/ws1/metrics", headers=ANALYTICS)
        await client.get("/nowhere")
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    for line in ('bonychat_http_requests_total{method="POST",route="/v1/events",status="202"} 1.0',
                 'bonychat_http_requests_total{method="POST",route="/v1/events",status="401"} 1.0',
                 'bonychat_http_requests_total{method="GET",route="/v1/workspaces/{ws}/metrics",'
                 'status="200"} 1.0',
                 'bonychat_http_requests_total{method="GET",route="unmatched",status="404"} 1.0',
                 'bonychat_http_ingested_items_total{status="accepted"} 1.0'):
        assert line in text
    assert "bonychat_http_request_duration_seconds_bucket" in text


@async_test
async def test_healthz(tmp_path: Path, sink: RecordingSink, stores: Stores) -> None:
    settings = make_settings(tmp_path)
    state: dict[str, Any] = {"ready": True, "mode": "embedded"}
    async with serve(app_for(settings, sink, stores, health=lambda: dict(state))) as client:
        response = await client.get("/healthz")
        assert response.status == 200
        assert await response.json() == {"status": "ok", "ready": True, "mode": "embedded"}
        state["ready"] = False
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json())["status"] == "unavailable"
    async with serve(app_for(settings, sink, stores)) as client:
        response = await client.get("/healthz")
        assert response.status == 200 and await response.json() == {"status": "ok"}


@async_test
async def test_unknown_routes_and_methods_answer_json(tmp_path: Path, sink: RecordingSink,
                                                      stores: Stores) -> None:
    async with serve(app_for(make_settings(tmp_path), sink, stores)) as client:
        assert (await error_of(await client.get("/v2/events"), 404))["error"] == "not_found"
        response = await client.get("/v1/events", headers=GATEWAY)
        assert (await error_of(response, 405))["error"] == "method_not_allowed"
        assert response.headers["Allow"] == "POST"


@async_test
async def test_apps_with_separate_registries_coexist(tmp_path: Path, sink: RecordingSink,
                                                     stores: Stores) -> None:
    # two apps in one process (each with its own Prometheus registry) both build
    # and serve, and each counts only its own requests
    apps = [app_for(make_settings(tmp_path), sink, stores) for _ in range(2)]
    accepted = 'bonychat_http_requests_total{method="POST",route="/v1/events",status="202"}'
    async with serve(apps[0]) as first, serve(apps[1]) as second:
        for n in range(2):
            response = await first.post("/v1/events", headers=GATEWAY,
                                        json=envelope("message.received", f"e{n}"))
            assert response.status == 202
        response = await second.post("/v1/events", headers=GATEWAY,
                                     json=envelope("message.received", "e9"))
        assert response.status == 202
        texts = [await (await client.get("/metrics")).text() for client in (first, second)]
    assert f"{accepted} 2.0" in texts[0]
    assert f"{accepted} 1.0" in texts[1]
