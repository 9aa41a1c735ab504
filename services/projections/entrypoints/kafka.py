"""The projections service: event store notification log -> conversation rows.

Each page is projected and its rows written with the tracked position in one
transaction, so a crash anywhere resumes exactly where the last commit left
off. One copy is active at a time (a single-active lock); the others stand by.

While a page is projected, the next one is already being read (when the last
page was full, i.e. there is a backlog), and when there is nothing new the
service waits for the conversation service's ``NOTIFY`` (:mod:`.wakeup`)
instead of polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from eventsourcing.persistence import IntegrityError

from services.conversation.application.ports import EventStore, Position, RawEventReader
from services.projections.application.ports import ReadModelStore
from services.projections.application.projector import EVENT_STORE_POSITION, ConversationProjection
from services.runtime.locks import SingleActiveLock, while_leader
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.wakeup import Wakeup

log = logging.getLogger(__name__)
SERVICE = "projections"
Page = list[tuple[int, Any]]


class ProjectionService:
    """Keeps the conversation read model caught up with the event store."""

    def __init__(self, *, events: EventStore, read_models: ReadModelStore,
                 lock: SingleActiveLock, metrics: RuntimeMetrics, health: Health,
                 idle_seconds: float = 1.0, page: int = 20_000,
                 wakeup: Wakeup | None = None) -> None:
        self.events = events
        self.read_models = read_models
        self.projection = ConversationProjection(read_models, on_closed=metrics.count_closed_rows)
        self.lock = lock
        self.metrics = metrics
        self.health = health
        self.idle_seconds = idle_seconds
        self.page = page
        self.wakeup = wakeup if wakeup is not None else Wakeup(None)
        #: reads stored JSON without decoding it, if the store can (checked once)
        self._raw = events if isinstance(events, RawEventReader) else None

    async def run(self, stop: asyncio.Event) -> None:
        self.health.set_ready(SERVICE)  # standing by counts as ready
        try:
            await while_leader(self.lock, stop, self._lead)
        finally:
            await self.wakeup.close()
        log.info("projections stopped")

    async def _lead(self, stop: asyncio.Event) -> None:
        self.projection.forget()  # another copy may have written rows meanwhile
        await self._follow(stop)

    def _read(self, after: int) -> Page:
        if self._raw is not None:
            page: Page = self._raw.read_raw(after, self.page)
            return page
        return self.events.read(after, self.page)

    def _apply(self, batch: Page) -> int:
        """Project one page (in a worker thread); returns events still behind."""
        started = time.perf_counter()
        after = batch[-1][0]
        position = Position(EVENT_STORE_POSITION, after)
        if self._raw is not None:
            self.projection.apply_read(batch, position)
        else:
            self.projection.apply([event for _, event in batch], position)
        self.metrics.batch_size.labels(SERVICE).observe(len(batch))
        self.metrics.batch_seconds.labels(SERVICE).observe(time.perf_counter() - started)
        self.metrics.domain_events.labels(SERVICE).inc(len(batch))
        if len(batch) < self.page:  # a short page: nothing was left behind as of the read
            return 0
        return max(0, self.events.max_notification_id() - after)

    async def _reposition(self) -> int:
        """Drop cached rows and take the read model's recorded position."""
        self.projection.forget()
        after = await asyncio.to_thread(self.read_models.position, EVENT_STORE_POSITION) or 0
        log.warning("projected by another process; going on from its position",
                    extra={"after": after})
        return after

    async def _follow(self, stop: asyncio.Event) -> None:
        await self.wakeup.listen()
        after = await asyncio.to_thread(self.read_models.position, EVENT_STORE_POSITION) or 0
        log.info("projections following the event store", extra={"after": after})
        checked = time.monotonic()
        ahead: asyncio.Future[Page] | None = None
        try:
            while not stop.is_set():
                if time.monotonic() - checked > 5:
                    if not await self.lock.still_held():
                        log.warning("projections lost the lock; standing by")
                        return
                    checked = time.monotonic()
                batch = await (ahead if ahead is not None
                               else asyncio.to_thread(self._read, after))
                ahead = None
                if not batch:
                    self.metrics.projection_lag.labels(SERVICE).set(0)
                    await self.wakeup.wait(stop, self.idle_seconds)
                    continue
                if len(batch) >= self.page:  # a backlog: read the next page meanwhile
                    ahead = asyncio.ensure_future(asyncio.to_thread(self._read, batch[-1][0]))
                try:
                    lag = await asyncio.to_thread(self._apply, batch)
                except IntegrityError:
                    # another process (an import or a dead-letter retry on this
                    # database) projected these events first: go on from its position
                    if ahead is not None:
                        await asyncio.gather(ahead, return_exceptions=True)
                        ahead = None
                    after = await self._reposition()
                    continue
                after = batch[-1][0]
                self.metrics.projection_lag.labels(SERVICE).set(lag)
                if len(batch) < self.page:  # caught up as of the read; a commit after
                    # it has notified the wake-up, so no second read to find nothing
                    await self.wakeup.wait(stop, self.idle_seconds)
        finally:
            if ahead is not None:
                await asyncio.gather(ahead, return_exceptions=True)
