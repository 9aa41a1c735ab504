"""Live updates for the dashboard: ``GET /v1/workspaces/{ws}/live`` (Server-Sent Events).

A :class:`LiveHub` fans "the read model of these workspaces changed" out to
every open stream. It is fed by whoever projects: the embedded sink calls
:meth:`LiveHub.publish` after each processed request (any thread), and in the
Kafka runtime :func:`listen_projected` forwards PostgreSQL ``NOTIFY`` messages
that the read model sends in the transaction of each projected batch.

A stream sends ``event: changed`` with ``{"workspace_id", "at"}`` at most every
:data:`COALESCE_SECONDS` (bursts are merged) and a comment line as keep-alive.
The browser then re-reads the summary with the same token. The stream is read
with ``fetch`` so the token travels in the ``Authorization`` header, never in
the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Coroutine
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from ..projections.notify import PROJECTED_CHANNEL, parse_payload
from ..projections.ports import ReadModelStore
from ..projections.projector import EVENT_STORE_POSITION
from .context import WORKSPACE

log = logging.getLogger(__name__)

COALESCE_SECONDS: Final = 0.2
KEEPALIVE_SECONDS: Final = 15.0


class LiveHub:
    """Subscribers per workspace; :meth:`publish` is safe from any thread."""

    def __init__(self) -> None:
        self._queues: set[tuple[str, asyncio.Queue[None]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = asyncio.Event()

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
        return entry

    def unsubscribe(self, entry: tuple[str, asyncio.Queue[None]]) -> None:
        self._queues.discard(entry)

    @property
    def subscribers(self) -> int:
        return len(self._queues)


LIVE = web.AppKey("bonychat.http.live", LiveHub)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def get_live(request: web.Request) -> web.StreamResponse:
    """``GET /v1/workspaces/{ws}/live``: ``text/event-stream`` of read-model changes."""
    hub: LiveHub = request.app[LIVE]
    workspace = request[WORKSPACE]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    entry = hub.subscribe(workspace)
    try:
        await response.write(_event("ready", {"workspace_id": workspace, "at": _now()}))
        while not hub.closed.is_set():
            waiter = asyncio.create_task(entry[1].get())
            closer = asyncio.create_task(hub.closed.wait())
            done, _ = await asyncio.wait({waiter, closer}, timeout=KEEPALIVE_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            closer.cancel()
            if closer in done:
                break
            if waiter not in done:
                await response.write(b": keep-alive\n\n")
                continue
            await asyncio.sleep(COALESCE_SECONDS)  # merge a burst into one event
            with contextlib.suppress(asyncio.QueueEmpty):
                entry[1].get_nowait()
            await response.write(_event("changed", {"workspace_id": workspace, "at": _now()}))
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        hub.unsubscribe(entry)
    return response


async def listen_projected(hub: LiveHub, conninfo: dict[str, Any],
                           stop: asyncio.Event) -> None:
    """Forward ``NOTIFY bonychat_projected`` to ``hub`` until ``stop`` (reconnects)."""
    import psycopg
    from psycopg.sql import SQL, Identifier

    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                    **{**conninfo, "autocommit": True,
                       "application_name": "bonychat-live"}) as conn:
                await conn.execute(SQL("LISTEN {}").format(Identifier(PROJECTED_CHANNEL)))
                hub.publish(None)  # whatever happened while we were not listening
                while not stop.is_set():
                    async for note in conn.notifies(timeout=0.5):
                        hub.publish(parse_payload(note.payload))
        except psycopg.Error as exc:
            log.warning("live updates: LISTEN %s failed (retrying): %s",
                        PROJECTED_CHANNEL, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)



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
