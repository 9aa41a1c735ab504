"""A record batch no consumer can decode is dead-lettered and skipped (issue 9, part 1).

kcat publishes one contact's events: a few plain records, then a zstd batch of
40, then a few more, all on one partition. The zstd batch's payload is then
garbled in the broker's log file (CRC recomputed: brokers validate batches on
produce, so a corrupt one cannot be produced; this is what a consumer would see
from a broken producer, a disk fault, or a codec it lacks). The service must
dead-letter each of the 40 offsets with a reason naming topic, partition and
offset, count them in ``bonychat_undecodable_records_total``, process the
records after them, and commit / track its position past them. Once for the
gateway topic (ingest -> DLQ topic) and once for the command topic
(conversation service -> dead-letter store); the operator commands' DLQ reader
lists such a batch on the DLQ topic as entries with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_fixtures import (
    World,
    corrupt_stored_batch,
    embedded_snapshot,
    kcat_publish,
    partition_of,
    read_topic,
    snapshot,
    wait_until,
)

from services.dead_letters.adapters.kafka import KafkaDeadLetterQueue
from services.dead_letters.application.ports import DeadLetterFilter
from services.ingest.domain.normalise import Invalid, parse
from services.runtime.sinks import command_record

pytestmark = pytest.mark.integration
SETTLE = 90
WS, CONTACT = "ws_corrupt", "c1"
KEY = f"{WS}:{CONTACT}".encode()
BAD = 40


def envelope(n: int, kind: str, minute: int) -> bytes:
    env: dict[str, Any] = {"event_id": f"{WS}-e{n}", "type": kind, "workspace_id": WS,
                           "contact_id": CONTACT,
                           "occurred_at": f"2026-10-01T10:{minute:02d}:00Z"}
    if kind == "message.received":
        env["channel"] = {"type": "whatsapp", "id": "line-1"}
        env["data"] = {"message_id": f"m-{n}", "text": "hello there, still waiting"}
    elif kind in ("message.sent", "conversation.close"):
        env["actor"] = {"type": "user", "id": "agent-1"}
    return json.dumps(env).encode()


def three_parts() -> tuple[list[bytes], list[bytes], list[bytes]]:
    before = [envelope(1, "message.received", 0), envelope(2, "message.sent", 1)]
    bad = [envelope(3 + i, "message.received", 2 + i // 4) for i in range(BAD)]
    after = [envelope(50, "message.sent", 20), envelope(51, "conversation.close", 21),
             envelope(52, "message.received", 30)]
    return before, bad, after


def publish_and_corrupt(world: World, topic: str, parts: tuple[list[Any], ...]) -> range:
    before, bad, after = parts
    kcat_publish(world.bootstrap, topic, before, "none")
    kcat_publish(world.bootstrap, topic, bad, "zstd")
    kcat_publish(world.bootstrap, topic, after, "none")
    offsets = corrupt_stored_batch(topic, partition_of(KEY, world.partitions), "zstd")
    if offsets is None:
        pytest.skip("the broker's log files are not on this machine")
    assert offsets == range(len(before), len(before) + BAD)
    return offsets


def undecodable_count(port: int, service: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = r'^bonychat_undecodable_records_total\{service="' + service + r'",[^}]*\} (\S+)$'
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


def converge(world: World, expected: dict[str, Any]) -> None:
    with world.opened() as stores:
        wait_until(lambda: snapshot(stores.read_models, (WS,)) == expected, SETTLE,
                   "the conversations of the decodable records")


def committed(world: World, group: str, tp: TopicPartition) -> int | None:
    async def read() -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            offset: int | None = await consumer.committed(tp)
            return offset
        finally:
            await consumer.stop()
    return asyncio.run(read())


@pytest.mark.parametrize("mode", ["gateway", "commands"])
def test_gateway_batch_that_cannot_be_decoded(world: World, mode: str) -> None:
    """Whichever reads the gateway topic (BONYCHAT_CONVERSATION_INPUT) dead-letters the batch."""
    reader = "conversation" if mode == "gateway" else "ingest"
    records = tuple([(KEY, v) for v in part] for part in three_parts())
    lines = [v for part in records for _, v in part]
    expected = embedded_snapshot([*lines[:2], *lines[2 + BAD:]], (WS,))
    assert expected[WS]["conversations"]
    topic = world.topics.gateway
    offsets = publish_and_corrupt(world, topic, records)
    process = world.serve(name=f"undecodable-gw-{mode}", BONYCHAT_CONVERSATION_INPUT=mode)
    port = process.port()
    partition = partition_of(KEY, world.partitions)

    converge(world, expected)

    def dead() -> list[Any]:
        found = read_topic(world.bootstrap, world.topics.dlq, idle_ms=500)
        return found if {r.headers["original_offset"] for r in found} == {
            str(o) for o in offsets} else []

    found = wait_until(dead, SETTLE, f"{BAD} dead letters")
    assert {int(r.headers["original_offset"]) for r in found} == set(offsets)
    for record in found:
        offset = record.headers["original_offset"]
        assert record.headers["reason"].startswith(
            f"undecodable record at {topic}:{partition}@{offset}: "), record.headers
        assert record.headers["original_partition"] == str(partition)
        assert record.headers["source"] == "kafka" and record.value == b""
    assert undecodable_count(port, reader) >= BAD
    tp = TopicPartition(topic, partition)
    end = len(lines)
    wait_until(lambda: committed(world, f"bonychat-{world.suffix}-{reader}", tp) == end,
               SETTLE, f"{reader} to commit past the bad batch")
    assert process.stop() == 0, process.log()


def test_command_batch_that_cannot_be_decoded(world: World) -> None:
    parts = three_parts()
    commands = tuple([command_record(c) for c in map(parse, part)
                      if not isinstance(c, Invalid)] for part in parts)
    assert [len(p) for p in commands] == [len(p) for p in parts]
    expected = embedded_snapshot([*parts[0], *parts[2]], (WS,))
    topic = world.topics.commands
    offsets = publish_and_corrupt(world, topic, commands)
    process = world.serve("conversation,projections", name="undecodable-cmd")
    port = process.port()
    partition = partition_of(KEY, world.partitions)

    converge(world, expected)
    with psycopg.connect(world.database_url) as conn:
        rows = conn.execute(f'SELECT reason, raw FROM "{world.schema}".dead_letters '
                            "WHERE source = 'commands' ORDER BY id").fetchall()
    # Each bad offset exactly once, although the start-up rebalance usually lands while the
    # first fetch is stepping through the bad batch (tests/unit/test_conversation_rebalance.py).
    assert sorted(int(re.search(r"@(\d+): ", reason)[1]) for reason, _ in rows) == list(offsets)
    for reason, raw in rows:
        assert reason.startswith(f"undecodable record at {topic}:{partition}@"), reason
        assert "DecompressionError" in reason and raw == ""
    assert undecodable_count(port, "conversation") >= BAD
    with world.opened() as stores:  # the tracked position is past the bad batch
        assert stores.events.position(f"{topic}:{partition}") == sum(map(len, commands)) - 1
    assert process.stop() == 0, process.log()


def test_dlq_reader_lists_an_undecodable_dlq_batch(world: World) -> None:
    """The operator commands read the DLQ topic: a batch there that cannot be decoded is
    listed as entries with the reason, the records around it as they were."""
    parts = three_parts()
    records = tuple([(KEY, v) for v in part] for part in parts)
    offsets = publish_and_corrupt(world, world.topics.dlq, records)
    partition = partition_of(KEY, world.partitions)
    queue = KafkaDeadLetterQueue(bootstrap=world.bootstrap, topic=world.topics.dlq,
                                 retry_group=f"bonychat-{world.suffix}-dlq-retry")

    entries = queue.entries(DeadLetterFilter())

    values = [v for part in parts for v in part]
    assert [e.id for e in entries] == [f"dlq-{partition}-{o}" for o in range(len(values))]
    for offset, (entry, value) in enumerate(zip(entries, values, strict=True)):
        if offset in offsets:
            assert entry.reason.startswith(f"undecodable record at {world.topics.dlq}:"
                                           f"{partition}@{offset}: "), entry
            assert entry.raw == ""
        else:
            assert entry.raw == value.decode() and entry.workspace_id == WS
