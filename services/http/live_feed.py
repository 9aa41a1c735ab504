"""The Dashboard summary pushed on the live stream, computed once for all its viewers.

``GET /live?dashboard=1&tz=ZONE`` streams ``event: dashboard`` whose data is what
``GET /dashboard?tz=ZONE`` answers. One :class:`SummaryFeed` per (workspace, zone)
computes the summary when the stream is opened and again after each change of the
workspace's read model (at most once per :data:`COALESCE_SECONDS`, and never
busier than half the time: after a computation of d seconds the next waits d;
changes meanwhile cause exactly one more), and hands the same bytes to every open
stream of that workspace and zone. So ten open dashboards cost one
summary per change, not ten, and the update travels on the stream instead of a
second request. A feed stops when its last stream closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

import orjson


class LiveHub(Protocol):
    """What a feed needs of :class:`services.http.live.LiveHub` (which imports this module)."""

    closed: asyncio.Event

    def subscribe(self, workspace: str) -> tuple[str, asyncio.Queue[None]]: ...

    def unsubscribe(self, entry: tuple[str, asyncio.Queue[None]]) -> None: ...

log = logging.getLogger(__name__)

#: at most one ``changed`` / one summary per stream or feed in this time (bursts merged)
COALESCE_SECONDS: Final = 0.2
RETRY_SECONDS: Final = 2.0  # after a failed computation (database unavailable...)
IDLE_CHECK_SECONDS: Final = 1.0  # how often a quiet feed looks whether anyone still listens

Summary = Callable[[], dict[str, Any]]


def sse(name: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event: ``event: NAME`` and its JSON ``data``."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def next_item(queue: asyncio.Queue[Any], closed: asyncio.Event, timeout: float
                    ) -> tuple[bool, Any]:
    """``(True, item)`` from ``queue``, or ``(False, None)`` after ``timeout`` or on close."""
    waiter = asyncio.create_task(queue.get())
    closer = asyncio.create_task(closed.wait())
    done, _ = await asyncio.wait({waiter, closer}, timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    closer.cancel()
    if waiter in done:
        return True, waiter.result()
    waiter.cancel()
    return False, None


def gap(started: float, ended: float, pause: float = 0.0) -> float:
    """Seconds to wait after a computation from ``started`` to ``ended`` before the next:
    at least :data:`COALESCE_SECONDS` from start to start, and as long as it took (so
    summaries of a busy workspace use at most half of the time the server has)."""
    took = ended - started
    return max(pause, COALESCE_SECONDS - took, took)


class SummaryFeed:
    """The summary of one workspace in one zone, for every stream that joined it."""

    def __init__(self, hub: LiveHub, workspace: str, compute: Summary,
                 on_idle: Callable[[SummaryFeed], None]) -> None:
        self.hub = hub
        self.workspace = workspace
        self.compute = compute
        self.on_idle = on_idle
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.latest: bytes | None = None
        self.computed = 0  # how many summaries were computed (for tests and metrics)
        self.task: asyncio.Task[None] | None = None

    def join(self) -> asyncio.Queue[bytes]:
        """A queue that always holds the newest summary not yet taken (at most one)."""
        queue = asyncio.Queue[bytes](maxsize=1)
        if self.latest is not None:
            queue.put_nowait(self.latest)
        self.queues.add(queue)
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name=f"live-feed-{self.workspace}")
        return queue

    def leave(self, queue: asyncio.Queue[bytes]) -> None:
        self.queues.discard(queue)

    def _send(self, payload: bytes) -> None:
        self.latest = payload
        for queue in self.queues:
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()  # an older summary nobody took yet: replaced
            queue.put_nowait(payload)

    def _listened(self) -> bool:
        return bool(self.queues) and not self.hub.closed.is_set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        changes = self.hub.subscribe(self.workspace)  # before computing: nothing is missed
        try:
            while self._listened():
                started = loop.time()
                pause = 0.0
                try:
                    summary = await asyncio.to_thread(self.compute)
                except Exception as exc:  # keep the streams open; try again
                    log.warning("live dashboard of %s: cannot compute the summary: %s",
                                self.workspace, exc)
                    pause = RETRY_SECONDS
                    if changes[1].empty():
                        changes[1].put_nowait(None)  # compute again after the pause
                else:
                    self.computed += 1
                    self._send(sse("dashboard", summary))
                await asyncio.sleep(gap(started, loop.time(), pause))
                while self._listened():  # the next change, or nobody listens any more
                    changed, _ = await next_item(changes[1], self.hub.closed,
                                                 IDLE_CHECK_SECONDS)
                    if changed:
                        break
        finally:
            self.hub.unsubscribe(changes)
            self.task = None
            self.on_idle(self)


class SummaryFeeds:
    """The running feeds, by (workspace, zone)."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.running: dict[tuple[str, str], SummaryFeed] = {}

    def join(self, workspace: str, tz: str, compute: Summary
             ) -> tuple[SummaryFeed, asyncio.Queue[bytes]]:
        key = (workspace, tz)
        feed = self.running.get(key)
        if feed is None:
            feed = SummaryFeed(self.hub, workspace, compute,
                               lambda done: self._stopped(key, done))
            self.running[key] = feed
        return feed, feed.join()

    def _stopped(self, key: tuple[str, str], feed: SummaryFeed) -> None:
        if self.running.get(key) is feed:
            del self.running[key]
