"""The projections service: event store notification log -> conversation rows.

:meth:`ConversationProjection.catch_up` writes rows and its tracked position in
one transaction, so a crash anywhere resumes exactly where the last commit left
off. One copy is active at a time (a single-active lock); the others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..conversation.ports import EventStore, Position
from ..projections.ports import ReadModelStore
from ..projections.projector import EVENT_STORE_POSITION, ConversationProjection
from .locks import SingleActiveLock, acquire
from .observability import Health, RuntimeMetrics

log = logging.getLogger(__name__)
SERVICE = "projections"


class ProjectionService:
    """Keeps the conversation read model caught up with the event store."""

    def __init__(self, *, events: EventStore, read_models: ReadModelStore,
                 lock: SingleActiveLock, metrics: RuntimeMetrics, health: Health,
                 idle_seconds: float = 0.1, page: int = 5_000) -> None:
        self.events = events
        self.read_models = read_models
        self.projection = ConversationProjection(read_models)
        self.lock = lock
        self.metrics = metrics
        self.health = health
        self.idle_seconds = idle_seconds
        self.page = page

    async def run(self, stop: asyncio.Event) -> None:
        self.health.set_ready(SERVICE)  # standing by counts as ready
        while not stop.is_set():
            if not await acquire(self.lock, stop):
                break
            try:
                self.projection.forget()  # another copy may have written rows meanwhile
                await self._follow(stop)
            finally:
                await self.lock.release()
        log.info("projections stopped")

    def _step(self, after: int) -> tuple[int, int]:
        """Project one page after ``after``; returns (new position, events still behind).

        Same as one round of :meth:`ConversationProjection.catch_up`, but a page at a
        time so that a stop request is noticed between pages.
        """
        started = time.perf_counter()
        batch = self.events.read(after, self.page)
        if batch:
            after = batch[-1][0]
            self.projection.apply([event for _, event in batch],
                                  Position(EVENT_STORE_POSITION, after))
            self.metrics.batch_size.labels(SERVICE).observe(len(batch))
            self.metrics.batch_seconds.labels(SERVICE).observe(time.perf_counter() - started)
            self.metrics.domain_events.labels(SERVICE).inc(len(batch))
        return after, max(0, self.events.max_notification_id() - after)

    async def _follow(self, stop: asyncio.Event) -> None:
        after = await asyncio.to_thread(self.read_models.position, EVENT_STORE_POSITION) or 0
        log.info("projections following the event store", extra={"after": after})
        checked = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - checked > 5:
                if not await self.lock.still_held():
                    log.warning("projections lost the lock; standing by")
                    return
                checked = time.monotonic()
            moved, lag = await asyncio.to_thread(self._step, after)
            self.metrics.projection_lag.labels(SERVICE).set(lag)
            if moved != after:
                after = moved
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.idle_seconds)
