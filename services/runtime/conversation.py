"""The conversation service: command topic -> event store, exactly once.

Each partition's batch is decided by the :class:`BatchProcessor` and committed in
ONE database transaction together with its outcomes, dead letters and the
consumed position ``{topic}:{partition}`` -> last offset. That tracked position,
not Kafka's committed offset, is where a partition resumes: on assignment the
consumer seeks to it. Kafka offsets are committed afterwards for lag tooling only.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.commands import CommandBase, CommandMessage

from ..conversation.ports import ConcurrencyConflict, EventStore, Position
from ..conversation.processor import BatchProcessor, BatchResult
from ..ingest.normalise import Invalid, describe
from .kafka import make_consumer, partitions_text, record_lag, subscribe
from .observability import Health, RuntimeMetrics
from .topics import KafkaTuning, Topics, group_id

log = logging.getLogger(__name__)
SERVICE = "conversation"
DEAD_LETTER_SOURCE = "commands"


def decode(record: ConsumerRecord[bytes, bytes]) -> CommandBase | Invalid:
    """A command record's body, or an invalid item (dead letter) if it does not decode."""
    raw = record.value if record.value is not None else b""
    try:
        body: CommandBase = CommandMessage.model_validate_json(raw).body
    except ValidationError as exc:
        text = raw.decode("utf-8", errors="replace")
        return Invalid(text, f"undecodable command at {record.topic}:{record.partition}@"
                             f"{record.offset}: {describe(exc)}")
    return body


def position_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ConversationService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.assigned(assigned)


class ConversationService:
    """Consumes commands and stores their outcome with the consumed position."""

    def __init__(self, *, bootstrap: str, topics: Topics, group_prefix: str,
                 tuning: KafkaTuning, events: EventStore, metrics: RuntimeMetrics,
                 health: Health, cache_size: int = 200_000) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.group = group_id(group_prefix, SERVICE)
        self.tuning = tuning
        self.events = events
        self.processor = BatchProcessor(events, cache_size=cache_size)
        self.metrics = metrics
        self.health = health
        self._consumer: AIOKafkaConsumer | None = None
        self._busy = asyncio.Lock()  # a rebalance waits for the batch in flight
        self._failure: Exception | None = None  # raised by the loop, not swallowed by aiokafka
        health.expect(SERVICE)

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._busy:
            self.processor.forget()
        if revoked:
            log.info("partitions revoked", extra={"partitions": partitions_text(revoked)})

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        async with self._busy:
            self.processor.forget()  # another copy may have changed these aggregates
            resume = {}
            try:
                for tp in assigned:
                    tracked = await asyncio.to_thread(self.events.position, position_name(tp))
                    resume[tp.partition] = tracked
                    # Offset 0 before the log start is reset to the earliest record.
                    consumer.seek(tp, 0 if tracked is None else tracked + 1)
            except Exception as exc:  # never consume from an unknown position
                self._failure = exc
                return
        log.info("partitions assigned", extra={
            "topic": self.topics.commands, "partitions": partitions_text(assigned),
            "resume_after": {str(k): v for k, v in sorted(resume.items())}})
        self.health.set_ready(SERVICE)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.bootstrap, self.tuning, topic=self.topics.commands,
                                 group=self.group, service=SERVICE)
        self._consumer = consumer
        subscribe(consumer, self.topics.commands, _Rebalance(self))
        await consumer.start()
        log.info("conversation service started",
                 extra={"topic": self.topics.commands, "group": self.group})
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=self.tuning.poll_timeout_ms,
                                                 max_records=self.tuning.max_poll_records)
                if self._failure is not None:
                    raise RuntimeError("reading tracked positions failed") from self._failure
                if not batches:
                    continue
                async with self._busy:
                    done = await self._handle(consumer, batches)
                await self._commit_for_lag(consumer, done)
        finally:
            self.health.set_ready(SERVICE, False)
            await consumer.stop()
            log.info("conversation service stopped")

    async def _handle(self, consumer: AIOKafkaConsumer,
                      batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                      ) -> dict[TopicPartition, int]:
        done: dict[TopicPartition, int] = {}
        assignment = consumer.assignment()
        for tp, records in batches.items():
            if not records or tp not in assignment:
                continue  # revoked while we were busy: the new owner resumes from PG
            started = time.perf_counter()
            await self._process(tp, records)
            done[tp] = records[-1].offset + 1
            self.metrics.batch_size.labels(SERVICE).observe(len(records))
            self.metrics.batch_seconds.labels(SERVICE).observe(time.perf_counter() - started)
            lag = record_lag(consumer, tp, done[tp])
            if lag is not None:
                self.metrics.consumer_lag.labels(SERVICE, tp.topic, str(tp.partition)).set(lag)
        return done

    async def _process(self, tp: TopicPartition,
                       records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Store one partition batch atomically with its position; skip what PG has."""
        name = position_name(tp)
        for attempt in (1, 2):
            try:
                items, result = await asyncio.to_thread(self._decide, records,
                                                        Position(name, records[-1].offset))
            except ConcurrencyConflict:
                # Another copy stored (part of) this batch during a rebalance: keep
                # only the records after the position it recorded, then retry once.
                tracked = await asyncio.to_thread(self.events.position, name)
                log.warning("batch conflicted; re-reading position",
                            extra={"partition": tp.partition, "tracked": tracked,
                                   "attempt": attempt})
                if attempt == 2:
                    raise
                records = [r for r in records if tracked is None or r.offset > tracked]
                if not records:
                    return
                continue
            self.metrics.count_batch(items, result, DEAD_LETTER_SOURCE)
            return

    def _decide(self, records: list[ConsumerRecord[bytes, bytes]], position: Position
                ) -> tuple[list[CommandBase | Invalid], BatchResult]:
        """Decode and process one batch (in a worker thread, off the event loop)."""
        items = [decode(r) for r in records]
        return items, self.processor.process(items, source=DEAD_LETTER_SOURCE,
                                             position=position)

    async def _commit_for_lag(self, consumer: AIOKafkaConsumer,
                              offsets: dict[TopicPartition, int]) -> None:
        """Kafka offsets mirror the PG positions for lag tooling; never read back."""
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            log.debug("lag-only offset commit skipped: %s", exc)
