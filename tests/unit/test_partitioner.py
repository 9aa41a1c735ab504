"""The cached partitioner picks the partitions Kafka's default partitioner picks."""

from __future__ import annotations

import asyncio

from aiokafka.partitioner import DefaultPartitioner

from bench import limits
from services.runtime.kafka import CachedPartitioner


def test_same_partition_as_the_default_for_every_key() -> None:
    cached, default = CachedPartitioner(size=50), DefaultPartitioner()
    for count in (1, 3, 4, 12):
        partitions = list(range(count))
        for n in range(400):  # past the cache's size: it is cleared and refilled
            key = f"ws-{n % 7}:contact-{n}".encode()
            expected = default(key, partitions, partitions)
            assert cached(key, partitions, partitions) == expected
            assert cached(key, partitions, partitions) == expected  # cached answer


def test_a_record_without_key_goes_to_an_existing_partition() -> None:
    cached, partitions = CachedPartitioner(), [0, 1, 2, 3]
    assert {cached(None, partitions, partitions) for _ in range(200)} <= set(partitions)


def test_the_benchmark_publisher_uses_it() -> None:
    async def partitioner() -> object:
        producer = limits.make_producer("127.0.0.1:1")  # not started: no connection
        return producer._partitioner

    assert isinstance(asyncio.run(partitioner()), CachedPartitioner)
