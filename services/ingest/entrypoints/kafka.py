"""The ingest service: gateway topic -> command topic (valid) or DLQ (invalid).

At-least-once: the consumed offsets are committed to Kafka only after the
producer has had every record of the batch acknowledged. A crash in between
redelivers the batch; the repeated commands are harmless because the
conversation service de-duplicates by ``(workspace_id, event_id)`` (a repeated
invalid input is a second DLQ record).

Acknowledged offsets are committed at most every ``commit_interval_ms``
(``BONYCHAT_KAFKA_COMMIT_INTERVAL_MS``), when a fetch comes back empty and when
the service stops -- not after every fetch: when records trickle in, each fetch
is small and a commit per fetch (a write to ``__consumer_offsets`` on the
broker, and a round trip before the next fetch) cost more than the fetch. A
crash redelivers at most that interval's worth of acknowledged records, which
the conversation service drops as duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas.commands import CommandBase
from services.ingest.domain.normalise import Invalid
from services.ingest.entrypoints.gateway_records import read_records
from services.runtime.fetch import SafeFetch
from services.runtime.kafka import (
    FetchHold,
    RecordBatches,
    commit_assigned,
    make_consumer,
    partitions_of,
    record_lag,
    start_consumer,
    subscribe,
)
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import bounded
from services.runtime.sinks import encode_command
from services.runtime.topics import KafkaTuning, Topics, group_id, partition_key

log = logging.getLogger(__name__)
SERVICE = "ingest"


def prepare(topics: Topics, records: list[ConsumerRecord[bytes, bytes]],
            out: RecordBatches) -> list[CommandBase | Invalid]:
    """Parse each gateway record; add its command record or its dead letter to ``out``.

    Runs in a worker thread: parsing, encoding and batching a whole fetch is one
    hop off the event loop, which then only submits the batches.
    """
    items = read_records(records, out, topics.dlq)
    add, commands = out.add, topics.commands
    for item in items:
        if not isinstance(item, Invalid):
            add(commands, partition_key(item.workspace_id, item.contact_id),
                encode_command(item))
    return items


@dataclass(slots=True)
class _InFlight:
    """One fetch handed to the producer, not yet acknowledged nor committed."""

    items: list[CommandBase | Invalid]
    acks: list[asyncio.Future[Any]]
    offsets: dict[TopicPartition, int]
    started: float


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
        await start_consumer(consumer)
        self.health.set_ready(SERVICE)
        log.info("ingest started", extra={"topic": self.topics.gateway, "group": self.group})
        fetch = SafeFetch(consumer, service=SERVICE, metrics=self.metrics,
                          hold=FetchHold(consumer, self.tuning))
        in_flight: _InFlight | None = None
        acked: dict[TopicPartition, int] = {}  # acknowledged, not yet committed
        interval = self.tuning.commit_interval_ms / 1000
        committed = time.monotonic()
        try:
            while not stop.is_set():
                batches = await fetch.getmany(timeout_ms=self.tuning.poll_timeout_ms,
                                              max_records=self.tuning.max_poll_records)
                # While the broker acknowledges one fetch, the next one is parsed.
                sent = await self._forward(batches) if batches else None
                if in_flight is not None:
                    acked.update(await self._complete(consumer, in_flight))
                in_flight = sent
                if acked and (not batches or time.monotonic() - committed >= interval):
                    await self._commit(consumer, acked)
                    acked, committed = {}, time.monotonic()
            if in_flight is not None:
                acked.update(await self._complete(consumer, in_flight))
            if acked:
                await self._commit(consumer, acked)
        finally:
            # Unacknowledged fetches are not committed: a rerun (after a Kafka
            # failure, :func:`.retry.retrying`) or another copy reads them again.
            self.health.set_ready(SERVICE, False)
            await bounded(consumer.stop(), 10, "stopping the ingest consumer")
            log.info("ingest stopped")

    async def _forward(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                       ) -> _InFlight:
        """Parse and batch one fetch off the loop, then hand the batches to the producer.

        Each partition's records keep their offset order on the command topic: the
        batches of one partition are filled and submitted in order, and a fetch's
        batches are submitted only after the previous fetch's.
        """
        started = time.perf_counter()
        records = [r for batch in batches.values() for r in batch]
        out = RecordBatches(self.producer, await partitions_of(
            self.producer, (self.topics.commands, self.topics.dlq)))
        items = await asyncio.to_thread(prepare, self.topics, records, out)
        acks = await out.submit()
        offsets = {tp: batch[-1].offset + 1 for tp, batch in batches.items() if batch}
        return _InFlight(items, acks, offsets, started)

    async def _complete(self, consumer: AIOKafkaConsumer, sent: _InFlight
                        ) -> dict[TopicPartition, int]:
        """Wait until the broker has every record of one fetch; its offsets to commit."""
        if sent.acks:
            await asyncio.gather(*sent.acks)
        self.metrics.count_ingest(sent.items, "kafka")
        self.metrics.batch_size.labels(SERVICE).observe(len(sent.items))
        self.metrics.batch_seconds.labels(SERVICE).observe(time.perf_counter() - sent.started)
        for tp, offset in sent.offsets.items():
            lag = record_lag(consumer, tp, offset)
            if lag is not None:
                self.metrics.consumer_lag.labels(SERVICE, tp.topic, str(tp.partition)).set(lag)
        return sent.offsets

    @staticmethod
    async def _commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit acknowledged offsets of the partitions still assigned.

        A partition revoked meanwhile is left out: its new owner redelivers from
        the last commit, and the conversation service drops the repeats.
        """
        try:
            await commit_assigned(consumer, offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took partitions away: their new owner redelivers the
            # batch, and the conversation service drops the repeated commands.
            log.warning("ingest offset commit failed (rebalance?): %s", exc)
        except KafkaError as exc:
            log.warning("ingest offset commit failed: %s", exc)
