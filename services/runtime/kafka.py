"""Kafka client factories (aiokafka) with the runtime's delivery settings.

Consumers never auto-commit and read only committed records; a group without a
committed position starts at the beginning of its topic (CONTRACT §5).
Producers are idempotent with ``acks=all``, so a retried send is written once
and records of one partition keep their order.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.partitioner import DefaultPartitioner

from services.runtime.murmur import murmur2
from services.runtime.retry import bounded
from services.runtime.topics import KafkaTuning

Headers = list[tuple[str, bytes]]

#: Codec of every record batch our producers write (docs/runtime.md, "Compression"):
#: zstd level 3 compresses command/event JSON ~12x and costs less CPU per record
#: than aiokafka's lz4 (level 9); consumers decode all four codecs either way.
PRODUCER_COMPRESSION = "zstd"


class CachedPartitioner:
    """Kafka's default (murmur2) partitioner, remembering each key's partition.

    Keys repeat (one per contact), and murmur2 in Python (:mod:`.murmur`, twice
    as fast as aiokafka's) is a noticeable share of a send; results are identical
    to the default's.
    """

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._cache: dict[tuple[bytes, int], int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int],
                 available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        slot = (key, len(all_partitions))
        index = self._cache.get(slot)
        if index is None:
            index = key_hash(key) % len(all_partitions)
            if len(self._cache) >= self.size:
                self._cache.clear()
            self._cache[slot] = index
        return all_partitions[index]


_KEY_HASHES: dict[bytes, int] = {}
_KEY_HASHES_MAX = 200_000


def key_hash(key: bytes) -> int:
    """``murmur2(key) & 0x7FFFFFFF`` (Kafka's default partitioner), cached per key."""
    value = _KEY_HASHES.get(key)
    if value is None:
        value = murmur2(key) & 0x7FFFFFFF
        if len(_KEY_HASHES) >= _KEY_HASHES_MAX:
            _KEY_HASHES.clear()
        _KEY_HASHES[key] = value
    return value


class RecordBatches:
    """Kafka record batches per ``(topic, partition)``, filled off the event loop.

    ``producer.send`` costs a future, a partitioner call and the accumulator's
    bookkeeping per record on the event loop (about 10 µs); here records are
    appended to aiokafka ``BatchBuilder``s (C code) in a worker thread and the
    loop only submits whole batches with ``send_batch``: one future per batch.
    Keys go to the partition Kafka's default partitioner picks (murmur2, the
    same as :class:`CachedPartitioner`); records without a key to a random one.
    The idempotent producer numbers the batches when it drains them, so
    retries still write each batch once, and the batches of one partition are
    submitted in the order they were filled.
    """

    def __init__(self, producer: AIOKafkaProducer, partitions: Mapping[str, Sequence[int]]
                 ) -> None:
        self._producer = producer
        self._partitions = {topic: sorted(parts) for topic, parts in partitions.items()}
        self._open: dict[tuple[str, int], Any] = {}
        self.batches: list[tuple[str, int, Any]] = []
        self.records = 0

    def add(self, topic: str, key: bytes | None, value: bytes,
            headers: Sequence[tuple[str, bytes]] | None = None) -> None:
        parts = self._partitions[topic]
        partition = random.choice(parts) if key is None else parts[key_hash(key) % len(parts)]
        slot = (topic, partition)
        builder = self._open.get(slot)
        if builder is None or builder.append(timestamp=None, key=key, value=value,
                                             headers=headers or []) is None:
            builder = self._producer.create_batch()
            self._open[slot] = builder
            self.batches.append((topic, partition, builder))
            # The first record of an empty batch is always taken, whatever its size.
            builder.append(timestamp=None, key=key, value=value, headers=headers or [])
        self.records += 1

    async def submit(self) -> list[asyncio.Future[Any]]:
        """Hand every batch to the producer (on the event loop); futures of the acks.

        Each builder is closed first: aiokafka lets an open batch linger
        ``linger_ms`` for more records, but these are complete, and batches
        submitted together still leave in one produce request per broker.
        """
        futures = []
        for topic, partition, builder in self.batches:
            builder.close()
            futures.append(await self._producer.send_batch(builder, topic, partition=partition))
        self.batches = []
        self._open.clear()
        return futures


async def partitions_of(producer: AIOKafkaProducer, topics: Iterable[str]
                        ) -> dict[str, list[int]]:
    """The partition ids of each topic (from the producer's metadata)."""
    return {topic: sorted(await producer.partitions_for(topic)) for topic in set(topics)}


def client_id(service: str) -> str:
    return f"bonychat-{service}-{os.getpid()}"


#: The largest record our producers write: a dead letter of an input over the
#: 1 MiB limit must still fit (the DLQ topic takes 4 MiB: infra/kafka/topics.py).
MAX_RECORD_BYTES = 4 * 1024 * 1024


def make_producer(bootstrap: str, tuning: KafkaTuning,
                  service: str = "runtime") -> AIOKafkaProducer:
    """An idempotent producer writing zstd-compressed batches."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id(service),
        enable_idempotence=True,
        acks="all",
        linger_ms=tuning.linger_ms,
        max_batch_size=tuning.max_batch_size,
        compression_type=PRODUCER_COMPRESSION,
        partitioner=CachedPartitioner(),
        request_timeout_ms=30_000,
        max_request_size=MAX_RECORD_BYTES,
    )


def make_consumer(bootstrap: str, tuning: KafkaTuning, *, topic: str, group: str,
                  service: str, colocate: bool = False) -> AIOKafkaConsumer:
    """A manually committing, read-committed consumer in ``group`` (subscribe later).

    ``colocate``: partition i of every subscribed topic (topics of equal partition
    counts, as ``infra/kafka/topics.py`` creates them) goes to the same member
    (the range assignor). Otherwise round robin. Exactly ONE assignor either way:
    aiokafka 0.14 sends a JoinGroup per offered assignor, the first offering only
    the first one, so with two every join changes the member's protocols twice
    and each change starts another rebalance; two members out of step then keep
    failing each other's SyncGroup for minutes (docs/runtime.md, "Conversation
    input"). A group whose members offer different assignors does not form
    (InconsistentGroupProtocol): switch a deployment's input with every copy stopped.
    """
    strategy = (RangePartitionAssignor,) if colocate else (RoundRobinPartitionAssignor,)
    return AIOKafkaConsumer(
        partition_assignment_strategy=strategy,
        bootstrap_servers=bootstrap,
        client_id=client_id(service),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=tuning.max_poll_records,
        fetch_max_wait_ms=tuning.fetch_max_wait_ms,
        fetch_min_bytes=tuning.fetch_min_bytes,
        max_partition_fetch_bytes=tuning.max_partition_fetch_bytes,
        session_timeout_ms=tuning.session_timeout_ms,
        heartbeat_interval_ms=max(1_000, tuning.session_timeout_ms // 3),
        max_poll_interval_ms=300_000,
    )


async def start_consumer(consumer: AIOKafkaConsumer, stop_seconds: float = 10) -> None:
    """``consumer.start()``; if it fails (or is cancelled), the consumer is stopped first.

    A subscribed consumer's start joins the group and its coordinator task is
    already running: left unstopped, it would stay a member, heartbeating and
    being assigned partitions that nobody reads, next to the fresh consumer the
    retry creates (InconsistentGroupProtocol, a broker lost mid-join, a shutdown).
    """
    try:
        await consumer.start()
    except BaseException:
        await bounded(consumer.stop(), stop_seconds, "stopping a consumer that did not start")
        raise


#: the fetch wait of a consumer whose last poll found nothing: a long poll that the
#: broker answers at the first record (holding fetches would only add requests)
IDLE_FETCH_MAX_WAIT_MS = 100


class FetchHold:
    """Fetches held at the broker while records flow; a long poll while idle.

    While records flow, the broker holds each fetch until ``fetch_min_bytes`` are
    there or ``fetch_max_wait_ms`` have passed, so a service cycles about once per
    wait however the records trickle in (docs/runtime.md, "Low load: batching
    fetches by time"). Held fetches would cost an idle consumer a request per wait,
    and would hold the first record after a quiet spell for the whole wait; so once
    a poll that waited at least that long finds nothing, fetches go back to the
    long poll the broker answers at once (``fetch_min_bytes`` 1, at least
    :data:`IDLE_FETCH_MAX_WAIT_MS`), and the next records switch holding on again.
    aiokafka reads both values from its fetcher for every request it builds; the
    switch applies from the next request. Without that fetcher (another client
    version) fetches stay held: only an idle consumer's cost differs.
    """

    def __init__(self, consumer: AIOKafkaConsumer, tuning: KafkaTuning) -> None:
        self.consumer = consumer
        self.held = (tuning.fetch_min_bytes, tuning.fetch_max_wait_ms)
        self.idle = (1, max(IDLE_FETCH_MAX_WAIT_MS, tuning.fetch_max_wait_ms))
        self.holding = True  # as make_consumer builds it

    def saw(self, records: int, waited_ms: int) -> None:
        """A poll that waited up to ``waited_ms`` returned ``records`` records."""
        if records:
            holding = True
        elif waited_ms >= self.held[1]:
            holding = False
        else:
            return  # too short a look to call the topic quiet
        fetcher: Any = getattr(self.consumer, "_fetcher", None)
        if holding == self.holding or not hasattr(fetcher, "_fetch_min_bytes"):
            return
        fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = (
            self.held if holding else self.idle)
        self.holding = holding


async def commit_assigned(consumer: AIOKafkaConsumer,
                          offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` of the partitions ``consumer`` still has; raises as ``commit``.

    A partition revoked meanwhile is left out: its new owner resumes from the last
    commit (or, for the conversation service, from its tracked position).
    """
    assignment = consumer.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in assignment}
    if offsets:
        await consumer.commit(offsets)


def subscribe(consumer: AIOKafkaConsumer, topic: str | list[str],
              listener: ConsumerRebalanceListener | None = None) -> None:
    topics = [topic] if isinstance(topic, str) else topic
    if listener is None:
        consumer.subscribe(topics)
    else:
        consumer.subscribe(topics, listener=listener)


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", errors="replace")
    return None


def reason_header(reason: str, limit: int = 2_000) -> bytes:
    """A DLQ ``reason`` header value (long pydantic messages are cut)."""
    return reason[:limit].encode("utf-8", errors="replace")


def partitions_text(tps: Iterable[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in tps)


def record_lag(consumer: AIOKafkaConsumer, tp: TopicPartition, next_offset: int) -> int | None:
    """Records of ``tp`` not yet consumed when the next one to read is ``next_offset``."""
    high = consumer.last_stable_offset(tp)
    if high is None:
        high = consumer.highwater(tp)
    if high is None:
        return None
    return max(0, int(high) - next_offset)
