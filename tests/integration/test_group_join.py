"""Two conversation consumers that join their group together both get an assignment.

The gateway input's consumer once offered two assignors (range, round robin).
aiokafka 0.14 joins with one JoinGroup request per offered assignor, the first
offering only range, and each change of a member's protocols makes the broker
start another rebalance: two members joining together then often failed each
other's SyncGroup for good (in trials on this broker, 5 of 11 pairs were still
rebalancing after 60 s, at generations 380 to 582; with range alone all 11 pairs
were assigned within 0.12 s, at generation 1 or 2). That was the hang of ``make test``'s
fault plan after a broker restart, when both copies rejoined at once
(docs/runtime.md, "Conversation input").
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer
from kafka_fixtures import World

from services.runtime.kafka import make_consumer, start_consumer
from services.runtime.topics import KafkaTuning

PAIRS = 6  # with two assignors, a pair stuck in the livelock about every other time
JOIN_SECONDS = 30  # a join takes well under a second here; the livelock lasts minutes


async def pair_joins(world: World) -> int | None:
    """The group's generation once both consumers are assigned (None: still joining)."""
    group = f"{world.suffix}-join-{uuid.uuid4().hex[:8]}"
    tuning = KafkaTuning(session_timeout_ms=6_000)
    consumers: list[AIOKafkaConsumer] = []
    for _ in range(2):
        consumer = make_consumer(world.bootstrap, tuning, topic=world.topics.commands,
                                 group=group, service="test", colocate=True)
        consumer.subscribe([world.topics.gateway, world.topics.commands])
        consumers.append(consumer)
    starts = [asyncio.ensure_future(start_consumer(c)) for c in consumers]
    try:
        _, pending = await asyncio.wait(starts, timeout=JOIN_SECONDS)
        if pending:
            return None
        assert all(c.assignment() for c in consumers)
        return max(c._coordinator.generation for c in consumers)
    finally:
        for start in starts:
            start.cancel()
        await asyncio.gather(*starts, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)


def test_two_colocating_consumers_joining_together_are_both_assigned(world: World) -> None:
    world.create()

    async def trials() -> list[int | None]:
        return [await pair_joins(world) for _ in range(PAIRS)]

    generations = asyncio.run(trials())
    assert None not in generations, generations
