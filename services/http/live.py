"""Live updates for the dashboard: ``GET /v1/workspaces/{ws}/live`` (Server-Sent Events).

A :class:`LiveHub` fans "the read model of these workspaces changed" out to
every open stream. It is fed by whoever projects: the embedded sink calls
:meth:`LiveHub.publish` after each processed request (any thread), and in the
Kafka runtime :func:`listen_projected` forwards PostgreSQL ``NOTIFY`` messages
that the read model sends in the transaction of each projected batch.

A stream sends ``event: changed`` with ``{"workspace_id", "at"}`` at once when
the read model changed, then at most one more per :data:`COALESCE_SECONDS`
(changes meanwhile are merged into it), and a comment line as keep-alive. With
``?dashboard=1`` it sends ``event: dashboard`` with the summary itself instead
(:mod:`services.http.live_feed`: one computation per change for all viewers).
The stream is read with ``fetch`` so the token travels in the ``Authorization``
header, never in the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Coroutine
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from services.http.context import CONTEXT, WORKSPACE
from services.http.dashboard import dashboard_zone, summary
from services.http.errors import ApiError
from services.http.live_feed import COALESCE_SECONDS, SummaryFeeds, next_item, sse
from services.projections.adapters.notify import PROJECTED_CHANNEL, parse_payload
from services.projections.application.ports import ReadModelStore
from services.projections.application.projector import EVENT_STORE_POSITION

log = logging.getLogger(__name__)

__all__ = ["COALESCE_SECONDS", "LIVE", "LiveHub", "get_live"]
KEEPALIVE_SECONDS: Final = 15.0


class LiveHub:
    """Subscribers per workspace; :meth:`publish` is safe from any thread."""

    def __init__(self) -> None:
        self._queues: set[tuple[str, asyncio.Queue[None]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = asyncio.Event()
        #: set while a stream is open (the Kafka runtime LISTENs only then)
        self.watched = asyncio.Event()
        self.feeds = SummaryFeeds(self)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the streams run on (set when the app starts)."""
        self._loop = loop

    def publish(self, workspaces: Collection[str] | None) -> None:
        """The read model of ``workspaces`` (None: of any workspace) changed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        wanted = None if workspaces is None else frozenset(workspaces)
        with contextlib.suppress(RuntimeError):  # loop closing
            loop.call_soon_threadsafe(self._fan_out, wanted)

    def _fan_out(self, workspaces: frozenset[str] | None) -> None:
        for workspace, queue in list(self._queues):
            if (workspaces is None or workspace in workspaces) and queue.empty():
                queue.put_nowait(None)

    def subscribe(self, workspace: str) -> tuple[str, asyncio.Queue[None]]:
        entry = (workspace, asyncio.Queue[None](maxsize=1))
        self._queues.add(entry)
        self.watched.set()
        return entry

    def unsubscribe(self, entry: tuple[str, asyncio.Queue[None]]) -> None:
        self._queues.discard(entry)
        if not self._queues:
            self.watched.clear()

    @property
    def subscribers(self) -> int:
        return len(self._queues)


LIVE = web.AppKey("bonychat.http.live", LiveHub)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _next(queue: asyncio.Queue[Any], closed: asyncio.Event) -> tuple[bool, Any]:
    return await next_item(queue, closed, KEEPALIVE_SECONDS)


async def _tell_changes(response: web.StreamResponse, hub: LiveHub, workspace: str) -> None:
    """``changed`` at once, then at most one per :data:`COALESCE_SECONDS`."""
    entry = hub.subscribe(workspace)
    try:
        while not hub.closed.is_set():
            got, _ = await _next(entry[1], hub.closed)
            if not got:
                if not hub.closed.is_set():
                    await response.write(b": keep-alive\n\n")
                continue
            await response.write(sse("changed", {"workspace_id": workspace, "at": _now()}))
            await asyncio.sleep(COALESCE_SECONDS)  # a change meanwhile is told right after
    finally:
        hub.unsubscribe(entry)


async def _push_dashboards(response: web.StreamResponse, hub: LiveHub, workspace: str,
                           tz: str, request: web.Request) -> None:
    """``dashboard`` with the summary now and after each change (shared computation)."""
    store = request.app[CONTEXT].read_models
    feed, queue = hub.feeds.join(workspace, tz,
                                 lambda: summary(store, workspace, tz, datetime.now(UTC)))
    try:
        while not hub.closed.is_set():
            got, payload = await _next(queue, hub.closed)
            if got:
                await response.write(payload)
            elif not hub.closed.is_set():
                await response.write(b": keep-alive\n\n")
    finally:
        feed.leave(queue)


async def get_live(request: web.Request) -> web.StreamResponse:
    """``GET /v1/workspaces/{ws}/live[?dashboard=1&tz=]``: ``text/event-stream``."""
    hub: LiveHub = request.app[LIVE]
    workspace = request[WORKSPACE]
    mode = request.query.get("dashboard", "")
    if mode not in ("", "0", "1"):
        raise ApiError(400, f"dashboard: {mode!r} is not 0 or 1")
    # a bad zone is a 400 before the stream starts; none is the workspace's zone, as it
    # is now (a stream keeps the zone it opened with)
    events = request.app[CONTEXT].events if mode == "1" else None
    tz = await asyncio.to_thread(dashboard_zone, request.query, events, workspace)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    try:
        await response.write(sse("ready", {"workspace_id": workspace, "at": _now()}))
        if mode == "1":
            await _push_dashboards(response, hub, workspace, tz, request)
        else:
            await _tell_changes(response, hub, workspace)
    except ConnectionResetError:  # the browser went away
        pass
    return response


async def listen_projected(hub: LiveHub, conninfo: dict[str, Any],
                           stop: asyncio.Event) -> None:
    """Forward ``NOTIFY bonychat_projected`` to ``hub`` until ``stop`` (reconnects).

    Only while a stream is open (``hub.watched``): with none, no connection is held,
    so neither PostgreSQL nor this process wakes for every projected batch (each
    ``serve`` process has this listener; docs/runtime.md, "Per-cycle work").
    """
    import psycopg
    from psycopg.sql import SQL, Identifier

    while not stop.is_set():
        if not await _until_watched(hub, stop):
            return
        try:
            async with await psycopg.AsyncConnection.connect(
                    **{**conninfo, "autocommit": True,
                       "application_name": "bonychat-live"}) as conn:
                await conn.execute(SQL("LISTEN {}").format(Identifier(PROJECTED_CHANNEL)))
                hub.publish(None)  # whatever happened while we were not listening
                while not stop.is_set() and hub.watched.is_set():
                    async for note in conn.notifies(timeout=LISTEN_SLICE_SECONDS):
                        hub.publish(parse_payload(note.payload))
        except psycopg.Error as exc:
            log.warning("live updates: LISTEN %s failed (retrying): %s",
                        PROJECTED_CHANNEL, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)


#: how often a LISTEN connection looks whether it is still wanted (streams, stop)
LISTEN_SLICE_SECONDS: Final = 0.5


async def _until_watched(hub: LiveHub, stop: asyncio.Event) -> bool:
    """Wait until a stream is open (True) or ``stop`` (False)."""
    if hub.watched.is_set():
        return True
    watched = asyncio.ensure_future(hub.watched.wait())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((watched, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watched.cancel()
        stopped.cancel()
    return not stop.is_set()


async def poll_projected(hub: LiveHub, read_models: ReadModelStore, stop: asyncio.Event,
                         interval: float = 0.5) -> None:
    """Without NOTIFY (a SQLite read model fed by another process): poll the position."""
    last = await asyncio.to_thread(read_models.position, EVENT_STORE_POSITION)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        try:
            now = await asyncio.to_thread(read_models.position, EVENT_STORE_POSITION)
        except Exception as exc:  # keep the page alive; the next poll may work
            log.warning("live updates: cannot read the projection position: %s", exc)
            continue
        if now != last:
            last = now
            hub.publish(None)


def feed_in_background(app: web.Application,
                       feed: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run ``feed(stop)`` from the app's start to its cleanup."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(_: web.Application) -> None:
        tasks.append(asyncio.create_task(feed(stop), name="live-feed"))

    async def finish(_: web.Application) -> None:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 3.0)

    app.on_startup.append(start)
    app.on_cleanup.append(finish)
