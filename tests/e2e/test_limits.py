"""The HTTP limits of services/http/limits.py, each with its documented answer.

The server runs on aiohttp's ``AppRunner`` with the options ``bonychat serve``
uses (``SERVER_OPTIONS``); raw sockets play the misbehaving clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from fakes import FakeReadModelStore
from prometheus_client import CollectorRegistry
from sink_fakes import RecordingSink

from services.http import limits
from services.http.app import create_app
from services.http.limits import MAX_BATCH_ITEMS, SERVER_OPTIONS
from services.settings import Settings

from .test_http import async_test

pytestmark = pytest.mark.e2e
AUTH = b"Authorization: Bearer gw-ws1\r\n"


@asynccontextmanager
async def running(sink: RecordingSink, **options: Any) -> AsyncIterator[int]:
    """The app on a free port with ``SERVER_OPTIONS`` (overridden by ``options``)."""
    app = create_app(settings=Settings(gateway_tokens="ws1=gw-ws1", analytics_tokens="",
                                       gateway_tokens_file=None, analytics_tokens_file=None),
                     sink=sink, read_models=FakeReadModelStore(), registry=CollectorRegistry())
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           **{**SERVER_OPTIONS, **options})
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def exchange(port: int, data: bytes, *, then_wait: bool = False) -> bytes:
    """Send ``data``, then read until the server closes (or 20 s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        async with asyncio.timeout(20):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
                if not then_wait and b"\r\n\r\n" in b"".join(chunks):
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    length = _content_length(head)
                    if length is not None and len(body) >= length:
                        break
    finally:
        writer.close()
    return b"".join(chunks)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + AUTH + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def status_and_json(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, orjson.loads(body) if b"application/json" in head else body


def item(n: int) -> dict[str, Any]:
    return {"event_id": f"e{n}", "type": "message.received", "workspace_id": "ws1",
            "contact_id": f"c{n % 7}", "occurred_at": "2026-11-24T10:00:00Z",
            "channel": {"type": "sms"}}


@async_test
async def test_batch_item_limit_is_413(tmp_path: Path) -> None:
    sink = RecordingSink()
    async with running(sink) as port:
        at_limit = orjson.dumps([{"workspace_id": "ws1"}] * MAX_BATCH_ITEMS)
        status, body = status_and_json(await exchange(port, post(at_limit)))
        assert status == 202 and body["invalid"] == MAX_BATCH_ITEMS
        over = orjson.dumps([item(n) for n in range(MAX_BATCH_ITEMS + 1)])
        status, body = status_and_json(await exchange(port, post(over)))
    assert status == 413 and body["error"] == "payload_too_large"
    assert f"limit of {MAX_BATCH_ITEMS}" in body["detail"]
    assert len(sink.batches) == 1  # the refused batch handed nothing over


@async_test
async def test_nesting_deeper_than_1024_is_400(tmp_path: Path) -> None:
    sink = RecordingSink()
    async with running(sink) as port:
        def nested(depth: int) -> bytes:  # data: {"x": [[...]]} reaching ``depth`` in all
            inner = "[" * (depth - 2) + "]" * (depth - 2)
            return orjson.dumps(item(depth)).replace(b'"sms"}', b'"sms"},"data":{"x":'
                                                     + inner.encode() + b"}", 1)

        status, body = status_and_json(await exchange(port, post(nested(1024))))
        assert status == 202 and body["accepted"] == 1  # deep but within the limit
        status, body = status_and_json(await exchange(port, post(nested(1025))))
    assert status == 400 and "depth" in body["detail"]
    assert len(sink.items) == 1


@async_test
async def test_oversized_headers_are_400(tmp_path: Path) -> None:
    async with running(RecordingSink()) as port:
        body = orjson.dumps(item(1))
        long_value = b"X-Big: " + b"a" * (SERVER_OPTIONS["max_field_size"] + 10) + b"\r\n"
        status, _ = status_and_json(await exchange(port, post(body, long_value)))
        assert status == 400
        many = b"".join(b"X-H%d: v\r\n" % n for n in range(SERVER_OPTIONS["max_headers"] + 1))
        status, _ = status_and_json(await exchange(port, post(body, many)))
        assert status == 400
        long_path = b"GET /" + b"p" * (SERVER_OPTIONS["max_line_size"] + 10) + b" HTTP/1.1\r\n"
        status, _ = status_and_json(await exchange(port, long_path + b"Host: t\r\n\r\n"))
        assert status == 400
        fine = b"X-Ok: " + b"a" * 4000 + b"\r\n"  # well inside the limits: served
        status, _ = status_and_json(await exchange(port, post(body, fine)))
        assert status == 202


@async_test
async def test_slow_body_is_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "BODY_TIMEOUT_SECONDS", 0.5)
    sink = RecordingSink()
    async with running(sink) as port:
        body = orjson.dumps(item(1))
        partial = post(body)[:-10]  # the last 10 bytes never come
        status, answer = status_and_json(await exchange(port, partial))
    assert status == 408 and answer["error"] == "request_timeout"
    assert "0.5 s" in answer["detail"]
    assert sink.items == []


@async_test
async def test_slow_request_head_is_disconnected() -> None:
    """A client that never finishes its headers is dropped after the keep-alive timeout."""
    async with running(RecordingSink(), keepalive_timeout=0.5) as port:
        answer = await exchange(port, b"POST /v1/events HTTP/1.1\r\nHost: t\r\n" + AUTH,
                                then_wait=True)
    assert answer == b""  # closed by the server, no request was ever handled

