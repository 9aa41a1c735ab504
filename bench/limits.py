"""The machine's limits, measured in the same run as our figures.

- ``raw_consume_events_per_s``: a bare aiokafka consumer reading generated
  gateway events and doing nothing with them (the Kafka limit);
- ``raw_copy_rows_per_s``: PostgreSQL ``COPY`` of rows the size of our stored
  events (the database limit).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def publish(bootstrap: str, topic: str, lines: Sequence[bytes]) -> float:
    """Publish JSONL lines keyed ``workspace_id:contact_id``; returns seconds taken."""
    import orjson

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10,
                                max_batch_size=512 * 1024, acks=1)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        for line in lines:
            key = _key(line, orjson)
            futures.append(await producer.send(topic, line, key=key))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _key(line: bytes, orjson: Any) -> bytes | None:
    try:
        obj = orjson.loads(line)
        return f"{obj['workspace_id']}:{obj['contact_id']}".encode()
    except Exception:  # invalid lines have no key: any partition
        return None


async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Events/s of a consumer that reads ``expected`` records and does nothing."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        seen = 0
        started: float | None = None
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                if started is None:
                    started = time.perf_counter()
                seen += len(records)
        assert started is not None
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def raw_copy(database_url: str, rows: int, state_bytes: int = 420) -> float:
    """Rows/s of ``COPY`` into a table shaped like the event store."""
    payload = b"x" * state_bytes
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (originator_id uuid, "
                     "originator_version bigint, topic text, state bytea, "
                     "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))")
        ids = [uuid.uuid4() for _ in range(max(rows // 10, 1))]
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                "COPY bench_copy (originator_id, originator_version, topic, state) "
                "FROM STDIN") as copy:
            for n in range(rows):
                copy.write_row((ids[n % len(ids)], n, "MessageReceived", payload))
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
    return rows / seconds
