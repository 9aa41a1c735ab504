"""Low-load batching of the Kafka runtime keeps its guarantees (docs/runtime.md).

Ingest commits acknowledged offsets at most every ``BONYCHAT_KAFKA_COMMIT_INTERVAL_MS``
but also whenever the gateway topic goes quiet, so a group's committed offsets
still reach the end of the topic without waiting for the interval; the relay,
paced by ``BONYCHAT_RELAY_INTERVAL_MS``, still publishes every event exactly once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from kafka_fixtures import (
    GATEWAY_READER,
    WORKSPACES,
    World,
    embedded_snapshot,
    generate_stream,
    read_topic,
    snapshot,
    wait_until,
)

pytestmark = pytest.mark.integration
SETTLE = 90


async def _committed_and_ends(bootstrap: str, group: str, topic: str
                              ) -> tuple[dict[int, int], dict[int, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        committed = {tp.partition: int(meta.offset) for tp, meta in found.items()
                     if tp.topic == topic and meta.offset >= 0}
        parts = sorted(consumer.partitions_for_topic(topic) or set())
        if not parts:
            await consumer._client.force_metadata_update()
            parts = sorted(consumer.partitions_for_topic(topic) or set())
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return committed, {tp.partition: int(end) for tp, end in ends.items()}
    finally:
        await consumer.stop()
        await admin.close()


def committed_to_the_end(world: World, group: str) -> bool:
    committed, ends = asyncio.run(_committed_and_ends(world.bootstrap, group,
                                                      world.topics.gateway))
    return bool(ends) and all(committed.get(p, 0) >= end for p, end in ends.items())


def test_ingest_commits_when_the_topic_goes_quiet_not_only_per_interval(world: World) -> None:
    stream = generate_stream(600, seed=23)
    ingest = world.serve("ingest", name="ingest", BONYCHAT_KAFKA_COMMIT_INTERVAL_MS="3600000",
                         BONYCHAT_CONVERSATION_INPUT="commands")  # the ingest service's test
    ingest.port()
    world.publish(stream.records)
    group = f"bonychat-{world.suffix}-ingest"
    # An hour-long interval: only the commit on a quiet topic can get there.
    wait_until(lambda: committed_to_the_end(world, group), SETTLE,
               "ingest's committed offsets to reach the end of the gateway topic")
    forwarded = read_topic(world.bootstrap, world.topics.commands)
    dead = read_topic(world.bootstrap, world.topics.dlq)
    assert len(forwarded) + len(dead) == len(stream.records)
    assert ingest.stop() == 0, ingest.log()


def assert_projected_and_relayed_once(world: World, expected: dict[str, Any]) -> None:
    """The read model equals ``expected``, and every stored event is on the events
    topic exactly once."""
    relay = f"relay:{world.topics.events}"
    with world.opened() as stores:
        wait_until(lambda: snapshot(stores.read_models, WORKSPACES) == expected, SETTLE,
                   "the read model to equal the embedded import")
        stored = stores.events.max_notification_id()
        wait_until(lambda: stores.read_models.position(relay) == stored, SETTLE,
                   "the relay to catch up")
    ids = [r.headers["event_id"] for r in read_topic(world.bootstrap, world.topics.events)]
    assert len(ids) == len(set(ids)) == stored


def test_a_paced_relay_publishes_every_event_once(world: World) -> None:
    stream = generate_stream(800, seed=29)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    serve = world.serve("ingest,conversation,projections,relay", name="all",
                        BONYCHAT_RELAY_INTERVAL_MS="400")
    serve.port()
    world.publish(stream.records[:400])
    world.publish(stream.records[400:])
    assert_projected_and_relayed_once(world, expected)
    assert serve.stop() == 0, serve.log()


def test_fetches_held_by_the_broker_still_bring_every_event_exactly_once(world: World) -> None:
    """A fetch below ``BONYCHAT_KAFKA_FETCH_MIN_BYTES`` comes back after the wait, so
    the last records of a trickle are not stranded; batching by time on both Kafka
    hops and paced projections change nothing in what is stored and projected."""
    stream = generate_stream(900, seed=31)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    serve = world.serve("ingest,conversation,projections,relay", name="all",
                        BONYCHAT_KAFKA_FETCH_MIN_BYTES="100000000",
                        BONYCHAT_KAFKA_COMMANDS_FETCH_MIN_BYTES="100000000",
                        BONYCHAT_KAFKA_FETCH_MAX_WAIT_MS="300",
                        BONYCHAT_KAFKA_COMMANDS_FETCH_MAX_WAIT_MS="250",
                        BONYCHAT_PROJECTIONS_INTERVAL_MS="200")
    serve.port()
    for start in range(0, len(stream.records), 300):  # three trickles, each far below
        world.publish(stream.records[start:start + 300])  # the minimum bytes
    assert_projected_and_relayed_once(world, expected)
    reader = f"bonychat-{world.suffix}-{GATEWAY_READER}"  # its offsets: for lag only
    wait_until(lambda: committed_to_the_end(world, reader), SETTLE,
               f"{GATEWAY_READER}'s committed offsets to reach the end of the gateway topic")
    assert serve.stop() == 0, serve.log()


def _histogram(text: str, name: str, service: str) -> dict[str, float]:
    """``le`` -> cumulative count of one service's histogram in a /metrics text."""
    out = {}
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(f"{name}_bucket{{") and f'service="{service}"' in head:
            out[head.split('le="')[1].split('"')[0]] = float(value)
    return out


def test_small_pages_of_the_followers_still_bring_every_event_exactly_once(
        world: World) -> None:
    """``BONYCHAT_RELAY_PAGE`` and ``BONYCHAT_PROJECTIONS_PAGE`` bound the pages the
    followers read under a backlog; every event is still projected and published once."""
    import urllib.request

    stream = generate_stream(700, seed=37)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    world.publish(stream.records)  # a backlog before the services start
    serve = world.serve("ingest,conversation,projections,relay", name="all",
                        BONYCHAT_RELAY_PAGE="7", BONYCHAT_PROJECTIONS_PAGE="11")
    port = serve.port()
    assert_projected_and_relayed_once(world, expected)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    relay = _histogram(text, "bonychat_batch_size", "relay")
    projections = _histogram(text, "bonychat_batch_size", "projections")
    assert relay["10.0"] == relay["+Inf"] > 50  # every page at most 7 events: many pages
    assert projections["1.0"] < projections["50.0"] == projections["+Inf"] > 30
    assert serve.stop() == 0, serve.log()
