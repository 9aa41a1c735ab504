"""Workspace settings over HTTP (CONTRACT §6.1) and the sweep inside ``serve`` (§6.4)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sink_fakes import RecordingSink

from services.composition import Stores, embedded_pipeline, open_stores
from services.http.app import create_app
from services.projections.entrypoints.sweep import InactivitySweep
from services.runtime.observability import RuntimeMetrics
from services.runtime.sinks import EmbeddedSink
from services.settings import Settings

from .test_http import async_test, envelope, error_of, serve


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(settings_for(tmp_path))
    yield opened
    opened.close()

ADMIN = {"Authorization": "Bearer ad-ws1"}
ANALYTICS = {"Authorization": "Bearer an-ws1"}


def settings_for(tmp_path: Path) -> Settings:
    return Settings(database_url=str(tmp_path / "bonychat.db"), gateway_tokens="ws1=gw-ws1",
                    analytics_tokens="ws1=an-ws1,ws2=an-ws2", admin_tokens="ws1=ad-ws1",
                    gateway_tokens_file=None, analytics_tokens_file=None,
                    admin_tokens_file=None)


def app_of(tmp_path: Path, stores: Stores) -> Any:
    return create_app(settings=settings_for(tmp_path), sink=RecordingSink(),
                      read_models=stores.read_models, registry=CollectorRegistry(),
                      events=stores.events)


@async_test
async def test_get_and_put_settings(tmp_path: Path, stores: Stores) -> None:
    async with serve(app_of(tmp_path, stores)) as client:
        url = "/v1/workspaces/ws1/settings"
        got = await client.get(url, headers=ANALYTICS)
        assert got.status == 200
        assert await got.json() == {"timezone": "UTC", "business_hours": None,
                                    "inactivity_timeout_seconds": None}
        put = await client.put(url, headers=ADMIN, data=orjson.dumps({
            "timezone": "Europe/Berlin", "inactivity_timeout_seconds": 3600,
            "business_hours": [{"day": "mon", "start": "09:00", "end": "18:00"}]}))
        assert put.status == 200, await put.text()
        body = await put.json()
        assert body["timezone"] == "Europe/Berlin" and body["inactivity_timeout_seconds"] == 3600
        reset = await client.put(url, headers=ADMIN,
                                 data=orjson.dumps({"inactivity_timeout_seconds": None}))
        assert (await reset.json()) == {**body, "inactivity_timeout_seconds": None}
        assert (await (await client.get(url, headers=ADMIN)).json()) == (await reset.json())
        metrics = await (await client.get("/v1/workspaces/ws1/metrics",
                                          headers=ANALYTICS)).json()
        assert metrics["tz"] == "Europe/Berlin"  # the workspace's zone without ?tz=


@async_test
async def test_bad_settings_are_400_and_store_nothing(tmp_path: Path, stores: Stores) -> None:
    async with serve(app_of(tmp_path, stores)) as client:
        url = "/v1/workspaces/ws1/settings"
        for bad in ({"timezone": "Mars/Olympus"}, {"inactivity_timeout_seconds": 59},
                    {"business_hours": [{"day": "mon", "start": "25:00", "end": "26:00"}]},
                    {"business_hours": [{"day": "xyz", "start": "09:00", "end": "10:00"}]},
                    {"business_hours": [{"day": "mon", "start": "10:00", "end": "09:00"}]},
                    {"business_hours": [{"day": "mon", "start": "09:00", "end": "12:00"},
                                        {"day": "mon", "start": "11:00", "end": "13:00"}]},
                    {"colour": "blue"}, [1]):
            response = await client.put(url, headers=ADMIN, data=orjson.dumps(bad))
            await error_of(response, 400)
        await error_of(await client.put(url, headers=ADMIN, data=b"{nope"), 400)
        got = await (await client.get(url, headers=ANALYTICS)).json()
        assert got == {"timezone": "UTC", "business_hours": None,
                       "inactivity_timeout_seconds": None}


@async_test
async def test_settings_auth(tmp_path: Path, stores: Stores) -> None:
    async with serve(app_of(tmp_path, stores)) as client:
        url = "/v1/workspaces/ws1/settings"
        body = orjson.dumps({"timezone": "Asia/Tokyo"})
        await error_of(await client.put(url, headers=ANALYTICS, data=body), 403)
        await error_of(await client.put(url, headers={"Authorization": "Bearer gw-ws1"},
                                        data=body), 403)
        await error_of(await client.put(url, data=body), 401)
        await error_of(await client.put(url, headers={"Authorization": "Bearer nope"},
                                        data=body), 401)
        await error_of(await client.get(url), 401)
        await error_of(await client.get("/v1/workspaces/ws2/settings", headers=ADMIN), 403)
        await error_of(await client.put("/v1/workspaces/ws2/settings", headers=ADMIN,
                                        data=body), 403)
        assert (await client.get(url, headers=ANALYTICS)).status == 200


@async_test
async def test_the_serve_sweep_closes_expired_conversations(tmp_path: Path,
                                                            stores: Stores) -> None:
    settings = settings_for(tmp_path)
    pipeline = embedded_pipeline(stores, settings)
    sink = EmbeddedSink(pipeline=pipeline)
    async with serve(app_of(tmp_path, stores)) as client:
        await client.put("/v1/workspaces/ws1/settings", headers=ADMIN,
                         data=orjson.dumps({"inactivity_timeout_seconds": 600}))
    from services.ingest.domain.normalise import parse

    await sink.submit([parse(orjson.dumps(envelope("message.received", "e1", "c1",
                                                   "2026-11-24T10:00:00Z")))])
    sweep = InactivitySweep(stores=stores, submit=sink.sweep, metrics=RuntimeMetrics())
    assert await sweep.sweep_once(datetime(2026, 11, 24, 10, 9, 59, tzinfo=UTC)) == 0
    assert await sweep.sweep_once(datetime(2026, 11, 24, 10, 10, tzinfo=UTC)) == 1
    assert await sweep.sweep_once(datetime(2026, 11, 24, 10, 10, tzinfo=UTC)) == 0
    (row,) = stores.read_models.conversations("ws1")
    assert (row.closed_by, row.public()["closed_at"]) == ("inactivity", "2026-11-24T10:10:00Z")
