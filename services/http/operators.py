"""What became of an event, and the dead letters, for the analytics token (issue 9 §3).

- ``GET /v1/workspaces/{ws}/events/{event_id}``: the JSON of ``bonychat outcome
  --format json`` (outcome, reason, the domain events it caused, its dead
  letters), or 404 when the event is unknown.
- ``GET /v1/workspaces/{ws}/dead-letters?since=&source=``: the workspace's dead
  letters as ``bonychat dead-letters --format json`` lists them (an array).
  Input that names no workspace is never shown to a workspace's token.

The :class:`~services.dead_letters.application.service.Operations` object is attached by the
runtime (:func:`attach_operations`); without it both answer 503. Its queries
run in a worker thread, one at a time (the SQLite connection is shared).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from aiohttp import web

from services.dead_letters.application.ports import SOURCES, DeadLetterFilter
from services.dead_letters.application.service import Operations, since_moment
from services.http.errors import ApiError, json_response

OPERATIONS = web.AppKey("bonychat.http.operations", Operations)
_LOCK = web.AppKey("bonychat.http.operations_lock", threading.Lock)
T = TypeVar("T")


def attach_operations(app: web.Application, operations: Operations) -> None:
    """Serve the operator routes from ``operations`` (closed with the app)."""
    app[OPERATIONS] = operations
    app[_LOCK] = threading.Lock()

    async def close(_: web.Application) -> None:
        await asyncio.to_thread(operations.store.close)

    app.on_cleanup.append(close)


async def _run(request: web.Request, query: Callable[[Operations], T]) -> T:
    operations = request.app.get(OPERATIONS)
    if operations is None:
        raise ApiError(503, "this server has no store to answer operator queries from")
    lock = request.app[_LOCK]

    def call() -> T:
        with lock:
            return query(operations)

    return await asyncio.to_thread(call)


def parse_since(text: str | None) -> datetime | None:
    """``since``: a UTC date ``YYYY-MM-DD`` or an RFC 3339 timestamp with offset, or 400."""
    if not text:
        return None
    try:
        return since_moment(text)
    except ValueError as exc:
        raise ApiError(400, f"since: {exc}") from None


async def get_event_outcome(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{ws}/events/{event_id}``: what became of one gateway event."""
    workspace, event_id = request.match_info["ws"], request.match_info["event_id"]
    report = await _run(request, lambda ops: ops.outcome(workspace, event_id))
    if report is None:
        raise ApiError(404, f"no event {event_id!r} in workspace {workspace!r}: never "
                            "received, or not processed yet")
    return json_response(report.public())


async def get_dead_letters(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{ws}/dead-letters``: the workspace's dead letters, oldest first."""
    source = request.query.get("source") or None
    if source is not None and source not in SOURCES:
        raise ApiError(400, f"source: {source!r} is not one of {', '.join(SOURCES)}")
    where = DeadLetterFilter(request.match_info["ws"], parse_since(request.query.get("since")),
                             source)
    entries = await _run(request, lambda ops: ops.dead_letters(where))
    return json_response([e.public() for e in entries])
