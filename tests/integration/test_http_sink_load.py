"""``POST /v1/events`` on the Kafka runtime under many concurrent requests (real Kafka).

Each request used to send its own batches; aiokafka holds one pending batch per
partition and shortens a waiter's timeout quadratically with its wake-ups, so
with a few hundred concurrent requests some failed with ``KafkaTimeoutError``
within about a second (the gateway got 503). Concurrent requests are now
produced together (``services/runtime/group_send.py``): every one is taken, each
record once, a request's records of one contact in their order.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest
from kafka_fixtures import World, read_topic

from schemas.commands import CommandBase
from services.ingest.domain.normalise import Invalid, parse
from services.runtime.kafka import make_producer
from services.runtime.sinks import KafkaSink
from services.runtime.topics import KafkaTuning

pytestmark = pytest.mark.integration
REQUESTS, PER_REQUEST = 300, 20


def request(n: int) -> list[CommandBase | Invalid]:
    """A gateway's batch: messages of 5 contacts, and one invalid item (to the DLQ)."""
    items = [parse(orjson.dumps({
        "event_id": f"r{n}-{i}", "type": "message.received", "workspace_id": "ws_load",
        "contact_id": f"c{(n + i) % 5}", "occurred_at": "2026-11-24T10:00:00Z",
        "channel": {"type": "whatsapp"}})) for i in range(PER_REQUEST - 1)]
    return [*items, parse(b'{"event_id": "r%d-bad"}' % n)]


async def submit_all(world: World) -> None:
    producer = make_producer(world.bootstrap, KafkaTuning(), "test-http")
    await producer.start()
    try:
        sink = KafkaSink(producer=producer, topics=world.topics, timeout=60)
        await asyncio.gather(*(sink.submit(request(n)) for n in range(REQUESTS)))
    finally:
        await producer.stop()


def test_hundreds_of_concurrent_requests_are_all_taken_each_record_once(world: World) -> None:
    asyncio.run(submit_all(world))  # before: KafkaTimeoutError -> SinkUnavailableError

    commands = read_topic(world.bootstrap, world.topics.commands)
    ids = [orjson.loads(r.value)["body"]["event_id"] for r in commands]
    assert len(ids) == REQUESTS * (PER_REQUEST - 1)
    assert not [i for i, n in Counter(ids).items() if n > 1]
    for n in range(0, REQUESTS, 37):  # one request's records of one contact: in order
        mine = [int(i.split("-")[1]) for i in ids if i.startswith(f"r{n}-")]
        by_contact = [[i for i in mine if (n + i) % 5 == c] for c in range(5)]
        assert all(seq == sorted(seq) for seq in by_contact)
    dead = read_topic(world.bootstrap, world.topics.dlq)
    assert sorted(orjson.loads(r.value)["event_id"] for r in dead) == sorted(
        f"r{n}-bad" for n in range(REQUESTS))
