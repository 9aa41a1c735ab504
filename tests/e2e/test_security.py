"""Security of the HTTP surface: workspace isolation and secrets kept out of logs.

* A hypothesis property over random workspaces x tokens x endpoints: no request
  ever reads or writes another workspace's data.
* A ``bonychat serve`` run at DEBUG log level, with tokens from token files and
  the environment, driven through every endpoint and auth failure: no token
  appears in its logs, and the file-only tokens are not in its command line or
  environment.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sink_fakes import RecordingSink

from services.composition import Stores, open_stores
from services.http.app import create_app
from services.in_process.pipeline import EmbeddedPipeline
from services.projections.application.ports import ReadModelStore
from services.settings import Settings

from .test_cli import bonychat_command

pytestmark = pytest.mark.e2e

WORKSPACES = ("ws1", "ws2", "ws3")
GATEWAY = {f"gw-{ws}-{i}": ws for ws in WORKSPACES for i in (1, 2)}
ANALYTICS = {f"an-{ws}-{i}": ws for ws in WORKSPACES for i in (1, 2)}


def token_list(tokens: dict[str, str]) -> str:
    return ",".join(f"{ws}={token}" for token, ws in tokens.items())


def envelope(ws: str, n: int, kind: str = "message.received") -> dict[str, Any]:
    """An event whose every identifier names its workspace (``c-ws2-3``)."""
    env: dict[str, Any] = {"event_id": f"e-{ws}-{n}", "type": kind, "workspace_id": ws,
                           "contact_id": f"c-{ws}-{n % 4}",
                           "occurred_at": f"2026-11-{10 + n % 10:02d}T10:{n % 60:02d}:00Z",
                           "channel": {"type": "whatsapp", "id": f"line-{ws}"}}
    if kind != "message.received":
        env["actor"] = {"type": "user", "id": f"agent-{ws}"}
    if kind == "conversation.assign":
        env["data"] = {"assignee_id": f"agent-{ws}", "team_id": f"team-{ws}"}
    return env


def history() -> list[dict[str, Any]]:
    events = []
    for ws in WORKSPACES:
        for n in range(12):
            kind = ("message.received", "conversation.assign", "conversation.close")[n % 3]
            events.append(envelope(ws, n, kind))
    return events


class SpyReadModels:
    """Passes reads to the real store and remembers the workspace each one asked for.

    Every method whose first argument is a workspace id is recorded; ``load_rows``
    (by conversation id) is checked on what it returns.
    """

    BY_WORKSPACE = frozenset({"conversations", "facts", "expired_contacts"})

    def __init__(self, inner: ReadModelStore) -> None:
        self.inner = inner
        self.asked: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name == "load_rows":
            def rows(*args: Any, **kwargs: Any) -> Any:
                found = method(*args, **kwargs)
                self.asked.extend(row.workspace_id for row in found.values())
                return found
            return rows
        if name not in self.BY_WORKSPACE:
            return method

        def recorded(workspace_id: str, *args: Any, **kwargs: Any) -> Any:
            self.asked.append(workspace_id)
            return method(workspace_id, *args, **kwargs)
        return recorded


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(Settings(database_url=str(tmp_path / "iso.db")))
    EmbeddedPipeline(opened.events, opened.read_models).run(orjson.dumps(e) for e in history())
    yield opened
    opened.close()


tokens = st.sampled_from([*GATEWAY, *ANALYTICS, "unknown-token", ""])
target_ws = st.sampled_from([*WORKSPACES, "ws4"])
items = st.lists(st.tuples(target_ws, st.integers(0, 40), st.sampled_from(
    ["message.received", "conversation.close", "broken"])), min_size=1, max_size=5)
requests = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/events"), items),
    st.tuples(st.just("GET"), target_ws.map(lambda ws: f"/v1/workspaces/{ws}/metrics"),
              st.sampled_from(["", "?group_by=assignee", "?group_by=channel", "?tz=Asia/Tokyo"])),
    st.tuples(st.just("GET"), target_ws.map(lambda ws: f"/v1/workspaces/{ws}/conversations"),
              st.sampled_from(["", "?status=open"]) | target_ws.map(
                  lambda ws: f"?contact=c-{ws}-1")),
    st.tuples(st.just("GET"), target_ws.map(lambda ws: f"/v1/workspaces/{ws}/dashboard"),
              st.sampled_from(["", "?tz=Europe/Berlin&now=2026-11-15T12:00:00Z"])),
    st.tuples(st.just("GET"), st.tuples(target_ws, target_ws).map(
        lambda pair: f"/v1/workspaces/{pair[0]}/contacts/c-{pair[1]}-1/events"), st.just("")),
)


def body_of(spec: list[tuple[str, int, str]]) -> list[Any]:
    body: list[Any] = []
    for ws, n, kind in spec:
        if kind == "broken":  # invalid, but it names a workspace
            body.append({"workspace_id": ws, "event_id": f"x-{ws}-{n}"})
        else:
            body.append(envelope(ws, 100 + n, kind))
    return body


def test_no_request_touches_another_workspace(stores: Stores) -> None:
    sink = RecordingSink()
    spy = SpyReadModels(stores.read_models)
    app = create_app(settings=Settings(gateway_tokens=token_list(GATEWAY),
                                       analytics_tokens=token_list(ANALYTICS),
                                       gateway_tokens_file=None, analytics_tokens_file=None),
                     sink=sink, read_models=spy,  # type: ignore[arg-type]
                     registry=CollectorRegistry(), events=stores.events)
    loop = asyncio.new_event_loop()

    async def start() -> TestClient[Any, Any]:
        started = TestClient(TestServer(app))
        await started.start_server()
        return started

    client = loop.run_until_complete(start())
    seen = {"ok": 0, "refused": 0}

    async def call(method: str, path: str, token: str, body: Any) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with client.request(method, path, headers=headers, json=body) as response:
            return response.status, await response.text()

    @settings(max_examples=int(os.environ.get("BONYCHAT_ISOLATION_EXAMPLES", "300")),
              deadline=None, database=None, suppress_health_check=list(HealthCheck),
              derandomize=True)  # the same examples every run: the count check below is stable
    @given(tokens, requests)
    def run(token: str, request: tuple[str, str, Any]) -> None:
        method, path, extra = request
        sink.batches.clear()
        spy.asked.clear()
        body = body_of(extra) if method == "POST" else None
        if method == "GET":
            path += extra
        status, text = loop.run_until_complete(call(method, path, token, body))
        realm = GATEWAY if method == "POST" else ANALYTICS
        own = realm.get(token)
        if own is None:  # no token, unknown token or one of the other realm
            assert status == 401, (status, text)
        assert status < 500, text
        # writes: only items of the token's workspace are ever handed over
        for item in sink.items:
            assert own is not None and item.workspace_id == own, (token, item)
        if method == "POST" and own is not None:
            if all(ws == own for ws, _, _ in extra):
                assert status == 202 and len(sink.items) == len(extra)
            else:
                assert status == 403 and not sink.items
        # reads: the store is only asked about the token's workspace
        assert all(ws == own for ws in spy.asked), (token, path, spy.asked)
        others = [ws for ws in WORKSPACES if ws != own]
        if method == "GET" and status == 200:
            assert path.startswith(f"/v1/workspaces/{own}/")
            echoed = text  # an answer may repeat what the path asked for; nothing else
            for segment in path.split("?")[0].split("/"):
                echoed = echoed.replace(f'"{segment}"', '""')
            for other in others:  # no identifier of another workspace in the answer
                assert f"-{other}" not in echoed, (token, path, text[:300])
        else:
            assert status != 200
        seen["ok" if status in (200, 202) else "refused"] += 1

    try:
        run()
    finally:
        loop.run_until_complete(client.close())
        loop.close()
    assert seen["ok"] > 10 and seen["refused"] > 10, seen  # both sides were exercised


# -- secrets stay out of logs and process listings --------------------------------------------


def test_tokens_never_appear_in_logs_of_a_debug_run(tmp_path: Path) -> None:
    file_gateway = {"gw-file-secret-7Qx9": "ws1"}
    file_analytics = {"an-file-secret-3Lp2": "ws1", "an-file-secret-ws2-8Zr": "ws2"}
    env_gateway = {"gw-env-secret-5Kt1": "ws2"}
    (tmp_path / "gateway").write_text("# gateway tokens\n" + "\n".join(
        f"{ws}={t}" for t, ws in file_gateway.items()) + "\n")
    (tmp_path / "analytics").write_text("\n".join(
        f"{ws}={t}" for t, ws in file_analytics.items()) + "\n")
    secrets = [*file_gateway, *file_analytics, *env_gateway]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
    env.update(BONYCHAT_DATABASE_URL=str(tmp_path / "serve.db"), BONYCHAT_HTTP_PORT="0",
               BONYCHAT_LOG_LEVEL="DEBUG", BONYCHAT_GATEWAY_TOKENS=token_list(env_gateway),
               BONYCHAT_GATEWAY_TOKENS_FILE=str(tmp_path / "gateway"),
               BONYCHAT_ANALYTICS_TOKENS_FILE=str(tmp_path / "analytics"))
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([*bonychat_command(), "serve"], env=env, cwd=tmp_path,
                                stdout=log_file, stderr=subprocess.STDOUT)
    try:
        port = wait_port(log_path, proc)
        base = f"http://127.0.0.1:{port}"
        exchanges = drive(base, list(file_gateway), list(env_gateway), list(file_analytics))
        listing = [Path(f"/proc/{proc.pid}/cmdline").read_bytes(),
                   Path(f"/proc/{proc.pid}/environ").read_bytes()]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert exchanges == EXPECTED, exchanges  # the tokens did work (and failed where meant to)
    log = log_path.read_text(errors="replace")
    assert '"level": "DEBUG"' in log or "listening on" in log
    assert len(log.splitlines()) >= 3
    for secret in secrets:
        assert secret not in log, f"token {secret[:6]}... appears in the server log"
    for secret in [*file_gateway, *file_analytics]:
        assert all(secret.encode() not in blob for blob in listing)


EXPECTED = [202, 202, 401, 401, 403, 200, 200, 403, 401, 401, 200, 200]


def wait_port(log_path: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on http://[^:]+:(\d+)", log_path.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        assert proc.poll() is None, log_path.read_text()
        time.sleep(0.1)
    raise AssertionError("bonychat serve did not start: " + log_path.read_text())


def drive(base: str, file_gw: list[str], env_gw: list[str], analytics: list[str]) -> list[int]:
    def call(method: str, path: str, auth: str | None, body: Any = None) -> int:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(base + path, data=data, method=method)
        if auth is not None:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.read()
            return exc.code

    good = [envelope("ws1", 1), {"workspace_id": "ws1", "event_id": "bad-1"}]
    return [
        call("POST", "/v1/events", f"Bearer {file_gw[0]}", good),
        call("POST", "/v1/events", f"Bearer {env_gw[0]}", [envelope("ws2", 2)]),
        call("POST", "/v1/events", f"Bearer {file_gw[0]}x", good),  # near miss
        call("POST", "/v1/events", f"Basic {file_gw[0]}", good),
        call("POST", "/v1/events", f"Bearer {env_gw[0]}", good),  # ws2 token, ws1 items
        call("GET", "/v1/workspaces/ws1/metrics?group_by=channel", f"Bearer {analytics[0]}"),
        call("GET", "/v1/workspaces/ws1/conversations", f"Bearer {analytics[0]}"),
        call("GET", "/v1/workspaces/ws1/conversations", f"Bearer {analytics[1]}"),
        call("GET", "/v1/workspaces/ws1/metrics", f"Bearer {file_gw[0]}"),  # wrong realm
        call("GET", "/v1/workspaces/ws1/metrics", None),
        call("GET", "/metrics", f"Bearer {analytics[0]}"),
        call("GET", "/healthz", None),
    ]
