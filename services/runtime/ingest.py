"""The ingest service: gateway topic -> command topic (valid) or DLQ (invalid).

At-least-once: the consumed offsets are committed to Kafka only after the
producer has had every record of the batch acknowledged. A crash in between
redelivers the batch; the repeated commands are harmless because the
conversation service de-duplicates by ``(workspace_id, event_id)`` (a repeated
invalid input is a second DLQ record).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas.commands import CommandBase

from ..ingest.normalise import Invalid, parse
from .kafka import Headers, make_consumer, record_lag, subscribe
from .observability import Health, RuntimeMetrics
from .sinks import OutRecord, out_records, produce
from .topics import KafkaTuning, Topics, group_id

log = logging.getLogger(__name__)
SERVICE = "ingest"


def _origin(record: ConsumerRecord[bytes, bytes]) -> Headers:
    return [("original_topic", record.topic.encode()),
            ("original_partition", str(record.partition).encode()),
            ("original_offset", str(record.offset).encode())]


def prepare(topics: Topics, records: list[ConsumerRecord[bytes, bytes]]
            ) -> tuple[list[CommandBase | Invalid], list[OutRecord]]:
    """Parse each gateway record; build its command record or its dead letter."""
    items = [parse(r.value if r.value is not None else b"") for r in records]
    origins = [_origin(r) if isinstance(item, Invalid) else [] for r, item
               in zip(records, items, strict=True)]
    out = out_records(topics, items, "kafka", dlq_keys=[r.key for r in records],
                      dlq_extra=origins)
    return items, out


class IngestService:
    """Validates gateway envelopes and forwards them, one partition batch at a time."""

    def __init__(self, *, bootstrap: str, topics: Topics, group_prefix: str,
                 tuning: KafkaTuning, producer: AIOKafkaProducer, metrics: RuntimeMetrics,
                 health: Health) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.group = group_id(group_prefix, SERVICE)
        self.tuning = tuning
        self.producer = producer
        self.metrics = metrics
        self.health = health
        health.expect(SERVICE)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.bootstrap, self.tuning, topic=self.topics.gateway,
                                 group=self.group, service=SERVICE)
        subscribe(consumer, self.topics.gateway)
        await consumer.start()
        self.health.set_ready(SERVICE)
        log.info("ingest started", extra={"topic": self.topics.gateway, "group": self.group})
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=self.tuning.poll_timeout_ms,
                                                 max_records=self.tuning.max_poll_records)
                if batches:
                    await self._handle(consumer, batches)
        finally:
            self.health.set_ready(SERVICE, False)
            await consumer.stop()
            log.info("ingest stopped")

    async def _handle(self, consumer: AIOKafkaConsumer,
                      batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Forward every partition's records (each partition's in offset order), then commit.

        All sends are queued before the one wait for acknowledgements; the producer
        keeps the order of records that go to the same partition.
        """
        started = time.perf_counter()
        records = [r for batch in batches.values() for r in batch]
        items, out = await asyncio.to_thread(prepare, self.topics, records)
        await produce(self.producer, out)
        offsets = {tp: batch[-1].offset + 1 for tp, batch in batches.items() if batch}
        self.metrics.count_ingest(items, "kafka")
        self.metrics.batch_size.labels(SERVICE).observe(len(records))
        self.metrics.batch_seconds.labels(SERVICE).observe(time.perf_counter() - started)
        for tp, offset in offsets.items():
            lag = record_lag(consumer, tp, offset)
            if lag is not None:
                self.metrics.consumer_lag.labels(SERVICE, tp.topic, str(tp.partition)).set(lag)
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took partitions away: their new owner redelivers the
            # batch, and the conversation service drops the repeated commands.
            log.warning("ingest offset commit failed (rebalance?): %s", exc)
        except KafkaError as exc:
            log.warning("ingest offset commit failed: %s", exc)
