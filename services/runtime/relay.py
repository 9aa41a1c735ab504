"""The outbox relay: event store notification log -> ``bonychat.conversation.events.v1``.

It follows the event store in notification order and publishes each domain event
(JSON of :func:`schemas.events.encode_event`) keyed ``workspace_id:contact_id``
with an ``event_id`` header. Its position is recorded after the broker has
acknowledged the batch, so a crash in between republishes the tail of a batch
with the same stable ``event_id``s: at-least-once to analytics consumers, who
de-duplicate by ``event_id``. One copy is active at a time (a single-active lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaProducer

from schemas.events import DomainEvent, encode_event, event_type_of

from ..conversation.ports import EventStore, Position
from ..projections.ports import ReadModelStore
from .locks import SingleActiveLock, acquire
from .observability import Health, RuntimeMetrics
from .sinks import OutRecord, produce
from .topics import Topics, partition_key

log = logging.getLogger(__name__)
SERVICE = "relay"


def event_record(topic: str, event: DomainEvent) -> OutRecord:
    """A domain event on the events topic: JSON value, contact key, id and type headers."""
    return OutRecord(topic, partition_key(event.workspace_id, event.contact_id),
                     encode_event(event), [("event_id", event.event_id.encode()),
                                           ("event_type", event_type_of(event).encode())])


def relay_position_name(topic: str) -> str:
    """Tracked in the read model's tracking table; ``reset()`` (replay) leaves it alone."""
    return f"relay:{topic}"


class OutboxRelay:
    """Publishes stored domain events once they are committed."""

    def __init__(self, *, events: EventStore, positions: ReadModelStore, topics: Topics,
                 producer: AIOKafkaProducer, lock: SingleActiveLock, metrics: RuntimeMetrics,
                 health: Health, page: int = 2_000, idle_seconds: float = 0.1) -> None:
        self.events = events
        self.positions = positions
        self.topic = topics.events
        self.name = relay_position_name(topics.events)
        self.producer = producer
        self.lock = lock
        self.metrics = metrics
        self.health = health
        self.page = page
        self.idle_seconds = idle_seconds

    async def run(self, stop: asyncio.Event) -> None:
        self.health.set_ready(SERVICE)  # standing by counts as ready
        while not stop.is_set():
            if not await acquire(self.lock, stop):
                break
            try:
                await self._follow(stop)
            finally:
                await self.lock.release()
        log.info("relay stopped")

    async def _follow(self, stop: asyncio.Event) -> None:
        after = await asyncio.to_thread(self.positions.position, self.name) or 0
        log.info("relay following the event store", extra={"after": after, "topic": self.topic})
        checked = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - checked > 5:
                if not await self.lock.still_held():
                    log.warning("relay lost its lock; standing by")
                    return
                checked = time.monotonic()
            batch = await asyncio.to_thread(self._page, after)
            if not batch:
                await self._lag(after)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.idle_seconds)
                continue
            started = time.perf_counter()
            await produce(self.producer, [record for _, record in batch])
            after = batch[-1][0]
            await asyncio.to_thread(self.positions.save, [], Position(self.name, after))
            self.metrics.domain_events.labels(SERVICE).inc(len(batch))
            self.metrics.batch_size.labels(SERVICE).observe(len(batch))
            self.metrics.batch_seconds.labels(SERVICE).observe(time.perf_counter() - started)
            await self._lag(after)

    def _page(self, after: int) -> list[tuple[int, OutRecord]]:
        """The next stored events as records to publish (built in a worker thread)."""
        return [(nid, event_record(self.topic, event))
                for nid, event in self.events.read(after, self.page)]

    async def _lag(self, after: int) -> None:
        newest = await asyncio.to_thread(self.events.max_notification_id)
        self.metrics.projection_lag.labels(SERVICE).set(max(0, newest - after))
