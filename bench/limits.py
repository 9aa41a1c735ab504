"""The machine's limits, measured in the same run as our figures, and Kafka helpers.

- ``raw_consume_events_per_s``: a bare aiokafka consumer (no consumer group, the
  services' fetch settings) reading the generated gateway events of a fresh topic
  and doing nothing with them (the Kafka + aiokafka limit);
- ``raw_copy_rows_per_s``: PostgreSQL ``COPY`` (binary, buffer prepared before the
  clock starts) of rows shaped and sized like our stored events (the database limit).
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import Sequence

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.admin import DeleteGroupsRequest
from psycopg.sql import SQL, Identifier

from services.runtime.kafka import CachedPartitioner, RecordBatches, partitions_of
from services.runtime.topics import KafkaTuning
from services.settings import Settings

Record = tuple[bytes | None, bytes]
ADMIN_TIMEOUT_MS = 15_000


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    await admin.start()
    return admin


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    """Create fresh topics; fails loudly if one exists or the broker refuses."""
    admin = await _admin(bootstrap)
    try:
        response = await admin.create_topics([NewTopic(n, partitions, 1) for n in names],
                                             timeout_ms=ADMIN_TIMEOUT_MS)
        errors = [item for item in response.topic_errors if item[1]]
        if errors:
            raise RuntimeError(f"topic creation failed: {errors}")
    finally:
        await admin.close()
    await wait_topics(bootstrap, names, partitions)


async def wait_topics(bootstrap: str, names: Sequence[str], partitions: int,
                      timeout: float = 15.0) -> None:
    """Wait until the broker's metadata shows every topic with all its partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            await consumer._client.force_metadata_update()
            known = {n: consumer.partitions_for_topic(n) for n in names}
            if all(p is not None and len(p) == partitions for p in known.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics not visible after {timeout}s: {known}")
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    admin = await _admin(bootstrap)
    try:
        await admin.delete_topics(list(names), timeout_ms=ADMIN_TIMEOUT_MS)
    finally:
        await admin.close()


async def delete_groups(bootstrap: str, groups: Sequence[str]) -> None:
    """Delete consumer groups (aiokafka has no admin call for it; DeleteGroups API)."""
    admin = await _admin(bootstrap)
    try:
        for group in groups:
            node = await admin.find_coordinator(group)
            await admin._send_request_to_node(node, DeleteGroupsRequest([group]))
    finally:
        await admin.close()


async def end_offsets(consumer: AIOKafkaConsumer, topic: str) -> dict[int, int]:
    """Partition -> next offset to be written (the high watermark)."""
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    found = await consumer.end_offsets(tps)
    return {tp.partition: int(offset) for tp, offset in found.items()}


async def group_offsets(admin: AIOKafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """Partition -> committed offset of ``group`` on ``topic`` (absent if none)."""
    found = await admin.list_consumer_group_offsets(group)
    return {tp.partition: int(meta.offset) for tp, meta in found.items()
            if tp.topic == topic and meta.offset >= 0}


#: records :func:`publish` hands over (and has acknowledged) at a time
CHUNK = 20_000


def keyed(lines: Sequence[bytes]) -> list[Record]:
    """Gateway records keyed ``workspace_id:contact_id`` as gateways do (None if unparsable)."""
    records: list[Record] = []
    for line in lines:
        try:
            obj = orjson.loads(line)
            key: bytes | None = f"{obj['workspace_id']}:{obj['contact_id']}".encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = None  # invalid inputs have no key: any partition
        records.append((key, line))
    return records


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    """A gateway-like producer: idempotent, acks=all, batched.

    Partitioned as Kafka's default partitioner does (murmur2 of the key), by the
    services' cached partitioner: aiokafka's own hashes every key in Python,
    which was ~5 % of the harness's CPU at 5,000/s, on the cores the measured
    pipeline shares (a gateway's librdkafka or Java client hashes in native code).
    """
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                            linger_ms=5, max_batch_size=512 * 1024, request_timeout_ms=30_000,
                            partitioner=CachedPartitioner())


async def publish(bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Publish ``records`` in order, wait for every acknowledgement; returns seconds taken.

    In chunks of ``CHUNK`` records handed to the producer as whole record batches
    (:class:`RecordBatches`: one future per batch, not per record), each chunk
    acknowledged before the next.
    """
    producer = make_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    try:
        partitions = await partitions_of(producer, [topic])
        for first in range(0, len(records), CHUNK):
            out = RecordBatches(producer, partitions)
            for key, value in records[first:first + CHUNK]:
                out.add(topic, key, value)
            await asyncio.gather(*await out.submit())
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume(bootstrap: str, topic: str, expected: int, *,
                      min_seconds: float = 1.0, timeout: float = 300.0) -> float:
    """Events/s of a consumer that reads ``expected`` records of ``topic`` and does nothing.

    No group (no join/rebalance wait), every partition assigned, read from the start;
    the clock starts when the first records arrive and they are not counted. A small
    topic is read again from the start until ``min_seconds`` have passed.
    """
    tuning = KafkaTuning.from_settings(Settings())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
        max_poll_records=tuning.max_poll_records, fetch_max_wait_ms=tuning.fetch_max_wait_ms,
        max_partition_fetch_bytes=tuning.max_partition_fetch_bytes)
    await consumer.start()
    try:
        ends = await end_offsets(consumer, topic)
        consumer.assign([TopicPartition(topic, p) for p in ends])
        await consumer.seek_to_beginning()
        seen = counted = 0
        started: float | None = None
        deadline = time.monotonic() + timeout
        while True:
            if seen >= expected:
                if started is not None and time.perf_counter() - started >= min_seconds:
                    break
                await consumer.seek_to_beginning()
                seen = 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw consume read {seen} of {expected} records in "
                                   f"{timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=1000, max_records=tuning.max_poll_records)
            n = sum(len(records) for records in batch.values())
            seen += n
            if started is None and n:
                started = time.perf_counter()
            elif n:
                counted += n
        assert started is not None
        elapsed = time.perf_counter() - started
        return counted / elapsed if counted and elapsed > 0 else float("nan")
    finally:
        await consumer.stop()


def _copy_buffer(rows: int, state_bytes: int, topic: str = "MessageReceived") -> bytes:
    """PostgreSQL binary COPY data: (uuid, bigint, text, bytea) rows."""
    head = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
    fixed = struct.pack("!i", len(topic)) + topic.encode() + struct.pack("!i", state_bytes) + \
        b"x" * state_bytes
    ids = [uuid.uuid4().bytes for _ in range(max(rows // 10, 1))]
    parts = [head]
    row = struct.Struct("!hi16siq")
    for n in range(rows):
        parts.append(row.pack(4, 16, ids[n % len(ids)], 8, n))
        parts.append(fixed)
    parts.append(struct.pack("!h", -1))
    return b"".join(parts)


def raw_copy(database_url: str, schema: str, rows: int, state_bytes: int = 420) -> float:
    """Rows/s of one ``COPY`` transaction into a table shaped like the event store."""
    data = _copy_buffer(rows, state_bytes)
    table = Identifier(schema, "bench_copy")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))
        conn.execute(SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(SQL("CREATE TABLE {} (originator_id uuid NOT NULL, "
                         "originator_version bigint NOT NULL, topic text NOT NULL, "
                         "state bytea NOT NULL, notification_id bigserial UNIQUE, "
                         "PRIMARY KEY (originator_id, originator_version))").format(table))
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(
                SQL("COPY {} (originator_id, originator_version, topic, state) "
                    "FROM STDIN (FORMAT binary)").format(table)) as copy:
            view = memoryview(data)
            for offset in range(0, len(data), 1 << 20):
                copy.write(view[offset:offset + (1 << 20)])
        seconds = time.perf_counter() - started
        conn.execute(SQL("DROP TABLE {}").format(table))
    return rows / seconds
