"""A service started while its dependencies are down waits for them (issue 14).

On a private Kafka + PostgreSQL (never the shared ones): both are stopped, then
``bonychat serve`` starts. It must not exit; ``/healthz`` answers 503 naming
the dependency it waits for and ``POST /v1/events`` 503 with ``Retry-After``.
PostgreSQL comes up: it now waits for Kafka. Kafka comes up: the same process,
never restarted, turns ready and processes gateway events into the same
conversations and metrics as ``bonychat import`` of them.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from services.composition import open_stores
from services.runtime.topics import Topics
from services.settings import Settings
from tests.integration.kafka_fixtures import (
    ServeProcess,
    embedded_snapshot,
    generate_stream,
    kcat_publish,
    snapshot,
    wait_until,
)

from .cluster import GATEWAY_TOKEN, service_env
from .infra import PrivateInfra, free_port

pytestmark = pytest.mark.faults
WORKSPACES = ("ws_late_a", "ws_late_b")


@pytest.fixture(scope="module")
def infra() -> Iterator[PrivateInfra]:
    if shutil.which("kcat") is None:
        pytest.skip("kcat is not installed (make deps-test installs it)")
    private = PrivateInfra()
    private.up()
    try:
        yield private
    finally:
        private.down()


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return {**data, "code": resp.status}
    except urllib.error.HTTPError as exc:
        return {**json.loads(exc.read() or b"{}"), "code": exc.code}
    except OSError:
        return None


def post_events(port: int) -> tuple[int, str | None]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events", data=b"[]", method="POST",
        headers={"Authorization": f"Bearer {GATEWAY_TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After")


def waiting_for(process: ServeProcess, port: int, dependency: str) -> dict[str, Any]:
    """The process is alive and its /healthz says 503, ``dependency`` down."""
    def probe() -> dict[str, Any] | None:
        assert process.popen.poll() is None, f"serve exited:\n{process.log()}"
        info = health(port)
        if info and info["code"] == 503 and dependency in info.get("down", {}):
            return info
        return None
    return wait_until(probe, 90, f"/healthz to report {dependency} down")


def test_a_service_started_before_its_dependencies_waits_and_then_works(
        infra: PrivateInfra) -> None:
    stream = generate_stream(600, seed=41, contacts=30, workspaces=WORKSPACES)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    assert all(expected[ws]["conversations"] for ws in WORKSPACES)
    infra.kafka_stop()
    infra.pg_stop()
    port = free_port()
    env = service_env(infra.bootstrap, infra.database_url, "")
    env.pop("BONYCHAT_TOPIC_SUFFIX")
    env["BONYCHAT_HTTP_PORT"] = str(port)
    process = ServeProcess.start("ingest,conversation,relay,projections", env, "late-deps")
    try:
        first = waiting_for(process, port, "postgresql")
        assert first["ready"] is False and first["live"] is True, first
        assert post_events(port) == (503, "1")  # refused at once, with Retry-After

        infra.pg_start()
        waiting_for(process, port, "kafka")  # stores open; now it waits for the broker

        infra.kafka_start()
        wait_until(lambda: (health(port) or {}).get("code") == 200, 120,
                   "/healthz 200 once both are up")
        kcat_publish(infra.bootstrap, Topics().gateway, stream.records, "zstd")
        stores = open_stores(Settings(database_url=infra.database_url))
        try:
            wait_until(lambda: snapshot(stores.read_models, WORKSPACES) == expected, 120,
                       "the conversations of the events published after the start")
        finally:
            stores.close()
        assert process.popen.poll() is None, process.log()  # the same process did it all
        assert "waiting for dependencies" in process.log()
    finally:
        code = process.stop()
    assert code == 0, process.log()
