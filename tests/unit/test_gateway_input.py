"""The conversation service reading the gateway topic itself (BONYCHAT_CONVERSATION_INPUT=gateway).

Its record path must do what ingest + the command topic did: a valid gateway
record is decided like the command ingest would have forwarded, an invalid or
undecodable one becomes exactly the DLQ record ingest writes (and no dead letter
in storage), and the transaction that moves the tracked position past an
invalid record is committed only once the broker acknowledged its DLQ record.
The service runs here over a real SQLite event store, with a fake consumer and
producer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from services.composition import open_stores
from services.conversation.entrypoints import kafka as conversation_kafka
from services.conversation.entrypoints.kafka import ConversationService
from services.conversation.entrypoints.records import read_group
from services.ingest.domain.normalise import Invalid, parse
from services.ingest.entrypoints.kafka import prepare
from services.runtime.fetch import SafeFetch, undecodable
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.sinks import command_record
from services.runtime.topics import KafkaTuning, Topics
from services.settings import Settings

TOPICS = Topics()
GATEWAY = TopicPartition(TOPICS.gateway, 1)
COMMANDS = TopicPartition(TOPICS.commands, 1)


def envelope(n: int, contact: str = "c1") -> bytes:
    return (b'{"event_id": "e%d", "type": "message.received", "workspace_id": "ws", '
            b'"contact_id": "%s", "occurred_at": "2026-10-01T10:%02d:00Z", '
            b'"channel": {"type": "webchat", "id": "w"}}' % (n, contact.encode(), n))


#: one partition of the gateway topic: valid, malformed JSON, not UTF-8, invalid
#: envelope (no offset in the time), valid, and an offset that could not be decoded
GATEWAY_VALUES: list[bytes | None] = [
    envelope(0), b'{"event_id": "broken"', b"\xff\xfe not utf-8",
    envelope(1).replace(b"10:01:00Z", b"10:01:00"), envelope(2), None]


def gateway_records() -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    for offset, value in enumerate(GATEWAY_VALUES):
        if value is None:
            records.append(undecodable(GATEWAY, offset, ValueError("bad lz4 frame")))
        else:
            records.append(ConsumerRecord(GATEWAY.topic, GATEWAY.partition, offset, 0, 0,
                                          b"ws:c1", value, None, 1, len(value), []))
    return records


def command_records() -> list[ConsumerRecord[bytes, bytes]]:
    command = parse(envelope(9, "c2"))
    assert not isinstance(command, Invalid)
    key, value = command_record(command)
    return [ConsumerRecord(COMMANDS.topic, COMMANDS.partition, 0, 0, 0, key, value, None, 1,
                           len(value), [])]


@dataclass
class Recorder:
    """Stands in for :class:`RecordBatches`: what was added, per topic."""

    added: list[tuple[str, bytes | None, bytes, Any]] = field(default_factory=list)
    records: int = 0

    def add(self, topic: str, key: bytes | None, value: bytes, headers: Any = None) -> None:
        self.added.append((topic, key, value, headers))
        self.records += 1


def test_gateway_records_are_read_and_dead_lettered_as_ingest_does() -> None:
    ours, theirs = Recorder(), Recorder()
    group = [(GATEWAY, gateway_records()), (COMMANDS, command_records())]
    items, gateway_items = read_group(group, TOPICS.gateway, TOPICS.dlq, ours)  # type: ignore[arg-type]
    ingest_items = prepare(TOPICS, gateway_records(), theirs)  # type: ignore[arg-type]

    # Decided: the two valid gateway records (as the commands ingest forwards) and the command.
    forwarded = [i for i in ingest_items if not isinstance(i, Invalid)]
    assert [i.event_id for i in items] == ["e0", "e2", "e9"]
    assert items[:2] == forwarded
    assert [type(i) for i in gateway_items] == [type(i) for i in ingest_items]
    # Dead letters: byte for byte what ingest writes, none for the valid records.
    dlq = [a for a in theirs.added if a[0] == TOPICS.dlq]
    assert ours.added == dlq and len(dlq) == 4
    values = [value for _, _, value, _ in ours.added]
    assert values == [b'{"event_id": "broken"', b"\xff\xfe not utf-8",
                      GATEWAY_VALUES[3], b""]
    headers = dict(ours.added[3][3])
    assert headers["source"] == b"kafka" and headers["original_offset"] == b"5"
    assert headers["original_topic"] == TOPICS.gateway.encode()
    assert headers["reason"].startswith(b"undecodable record at")


def test_without_gateway_input_a_gateway_topic_record_is_not_parsed() -> None:
    items, gateway_items = read_group([(COMMANDS, command_records())], None, TOPICS.dlq, None)
    assert [i.event_id for i in items] == ["e9"] and gateway_items == []


# --- the service: DLQ acknowledged before the position moves ------------------------------------

class Builder:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes, Any]] = []

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes, headers: Any) -> object:
        self.records.append((key, value, headers))
        return object()

    def close(self) -> None:
        pass


class Producer:
    """Each submitted batch gets an ack future the test resolves (or fails)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, Builder]] = []
        self.acks: list[asyncio.Future[Any]] = []

    def create_batch(self) -> Builder:
        return Builder()

    async def send_batch(self, builder: Builder, topic: str, *, partition: int
                         ) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, builder))
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


@dataclass
class Consumer:
    batches: list[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]
    assigned: set[TopicPartition]
    positions: dict[TopicPartition, int] = field(default_factory=dict)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return 100

    def highwater(self, tp: TopicPartition) -> int:
        return 100

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        pass

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int = 1_000) -> dict[TopicPartition, Sequence[Any]]:
        return self.batches.pop(0) if self.batches else {}


def dead_letters_stored(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])


@pytest.mark.parametrize("ack_fails", [False, True])
def test_the_position_moves_only_after_the_dead_letters_are_acknowledged(
        tmp_path: Path, ack_fails: bool) -> None:
    async def scenario() -> None:
        path = tmp_path / "events.db"
        stores = open_stores(Settings(database_url=str(path)))
        try:
            producer = Producer()
            service = ConversationService(
                bootstrap="unused", topics=TOPICS, group_prefix="t", tuning=KafkaTuning(),
                events=stores.events, metrics=RuntimeMetrics(), health=Health(),
                producer=producer)  # type: ignore[arg-type]
            service._dlq_partitions = {TOPICS.dlq: [0, 1, 2, 3]}
            asked: list[set[TopicPartition]] = []

            async def ingest_stopped_at(bootstrap: str, group: str,
                                        partitions: set[TopicPartition]
                                        ) -> dict[TopicPartition, int]:
                asked.append(set(partitions))
                return {}  # ingest never committed: from the beginning
            service.handover = ingest_stopped_at  # type: ignore[assignment]
            consumer = Consumer([{GATEWAY: gateway_records()}], {GATEWAY})
            service._consumer = consumer  # type: ignore[assignment]
            fetch = SafeFetch(consumer, service="conversation")  # type: ignore[arg-type]
            await service.assigned({GATEWAY})
            assert asked == [] and GATEWAY not in consumer.positions  # sought by the round
            await service._round(consumer, fetch)  # type: ignore[arg-type]
            assert asked == [{GATEWAY}] and consumer.positions[GATEWAY] == 0
            name = f"{GATEWAY.topic}:{GATEWAY.partition}"
            assert {t for t, _, _ in producer.sent} == {TOPICS.dlq}
            assert sorted(v for _, _, b in producer.sent for _, v, _ in b.records) == sorted(
                [b'{"event_id": "broken"', b"\xff\xfe not utf-8", GATEWAY_VALUES[3], b""])
            for _ in range(20):  # the transaction waits for the acknowledgement
                await asyncio.sleep(0.01)
            assert stores.events.position(name) is None
            pending = service._pending
            assert pending is not None and pending.commit is not None
            if ack_fails:
                producer.acks[0].set_exception(KafkaTimeoutError())
                for ack in producer.acks[1:]:
                    ack.set_result(None)
                with pytest.raises(KafkaTimeoutError):
                    await service._settle()
                assert stores.events.position(name) is None  # read again after a restart
                return
            for ack in producer.acks[:-1]:
                ack.set_result(None)
            for _ in range(20):  # one acknowledgement still missing
                await asyncio.sleep(0.01)
            assert stores.events.position(name) is None
            producer.acks[-1].set_result(None)
            await service._settle()
            assert stores.events.position(name) == len(GATEWAY_VALUES) - 1
            assert stores.events.seen([("ws", "e0"), ("ws", "e2"), ("ws", "e1")]) == {
                ("ws", "e0"), ("ws", "e2")}
            assert dead_letters_stored(path) == 0  # dead-lettered on the DLQ topic only
        finally:
            stores.close()

    asyncio.run(scenario())


def test_the_rebalance_callback_awaits_no_look_up_and_a_hanging_one_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka heartbeats again only once ``on_partitions_assigned`` returns.

    So the callback reads neither the tracked positions nor ingest's offsets: the
    next round seeks. There the look-up is bounded (the rebalance callbacks wait
    for the round); a partition whose look-up timed out is not consumed from an
    unknown position and is sought by a later round once the look-up answers.
    """
    monkeypatch.setattr(conversation_kafka, "HANDOVER_SECONDS", 0.05)

    async def scenario() -> None:
        stores = open_stores(Settings(database_url=str(tmp_path / "events.db")))
        try:
            service = ConversationService(
                bootstrap="unused", topics=TOPICS, group_prefix="t", tuning=KafkaTuning(),
                events=stores.events, metrics=RuntimeMetrics(), health=Health(),
                producer=Producer())  # type: ignore[arg-type]
            asked: list[set[TopicPartition]] = []
            answers: list[dict[TopicPartition, int]] = []

            async def ingest_stopped_at(bootstrap: str, group: str,
                                        partitions: set[TopicPartition]
                                        ) -> dict[TopicPartition, int]:
                asked.append(set(partitions))
                if not answers:
                    await asyncio.Event().wait()  # an admin request that never returns
                return answers[0]
            service.handover = ingest_stopped_at  # type: ignore[assignment]
            consumer = Consumer([], {GATEWAY})
            service._consumer = consumer  # type: ignore[assignment]
            fetch = SafeFetch(consumer, service="conversation")  # type: ignore[arg-type]
            await asyncio.wait_for(service.assigned({GATEWAY}), 5)
            assert asked == [] and service._unpositioned == {GATEWAY}
            with pytest.raises(TimeoutError):  # transient: _recover() backs off, then again
                await service._round(consumer, fetch)  # type: ignore[arg-type]
            assert asked == [{GATEWAY}] and GATEWAY not in consumer.positions
            assert service._unpositioned == {GATEWAY}
            answers.append({GATEWAY: 3})  # ingest committed offset 3
            await service._round(consumer, fetch)  # type: ignore[arg-type]
            assert consumer.positions[GATEWAY] == 3 and not service._unpositioned
        finally:
            stores.close()

    asyncio.run(scenario())


# --- serve: no ingest to run when the conversation service reads the gateway topic -------------

@pytest.mark.parametrize(("names", "mode", "kafka", "left"), [
    (["ingest", "conversation", "projections"], "gateway", "k:9092",
     ["conversation", "projections"]),
    (["ingest"], "gateway", "k:9092", ["http"]),
    (["ingest", "conversation", "projections"], "commands", "k:9092",
     ["ingest", "conversation", "projections"]),
    (["ingest", "conversation"], "gateway", None, ["ingest", "conversation"]),  # embedded
])
def test_serve_leaves_ingest_out_in_gateway_mode(
        names: list[str], mode: str, kafka: str | None, left: list[str]) -> None:
    from services.runtime.serve import without_ingest
    from services.runtime.workers import plan_workers

    settings = Settings(conversation_input=mode, kafka_bootstrap=kafka)  # type: ignore[arg-type]
    assert without_ingest(names, settings) == left
    if mode == "gateway" and kafka and "conversation" in names:  # no idle ingest worker
        assert plan_workers(left, settings, 2) == ["conversation", "projections"]
