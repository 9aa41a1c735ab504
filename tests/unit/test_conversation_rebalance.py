"""The conversation service never handles a record twice when a rebalance lands mid-fetch.

aiokafka runs the rebalance listener (``on_partitions_revoked`` /
``on_partitions_assigned``) in its coordinator task, so it can interleave with
a fetch in flight: at start-up the group's first assignment usually arrives
while the service already waits in ``getmany``. ``assigned`` seeks every
partition to its tracked position; a fetch that was isolating an undecodable
batch (:class:`SafeFetch` steps one record at a time and seeks past each bad
offset) went on from there, so the batch it returned held the bad offsets and
then records from *before* them. Its commit stored the dead letters, the next
fetch met the bad batch again, and they were stored twice (the commands, de-
duplicated by event id, hid it). Here a rebalance is injected at every possible
call of the fetch, over a real SQLite event store: each bad offset must be
dead-lettered exactly once, each good command accepted once, and the tracked
position must end at the last offset.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import UnsupportedCodecError

from services.composition import open_stores
from services.conversation.entrypoints.kafka import ConversationService
from services.ingest.domain.normalise import Invalid, parse
from services.runtime.fetch import SafeFetch
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.sinks import command_record
from services.runtime.topics import KafkaTuning, Topics
from services.settings import Settings

TOPICS = Topics()
TP = TopicPartition(TOPICS.commands, 0)
GOOD_BEFORE, BAD, GOOD_AFTER = 3, 4, 3


def envelope(n: int) -> bytes:
    return (b'{"event_id": "e%d", "type": "message.received", "workspace_id": "ws", '
            b'"contact_id": "c1", "occurred_at": "2026-10-01T10:%02d:00Z", '
            b'"channel": {"type": "webchat", "id": "w"}, '
            b'"data": {"message_id": "m%d", "text": "hi"}}' % (n, n, n))


def command_values() -> list[bytes]:
    values = []
    for n in range(GOOD_BEFORE + BAD + GOOD_AFTER):
        command = parse(envelope(n))
        assert not isinstance(command, Invalid)
        values.append(command_record(command)[1])
    return values


@dataclass
class RebalancingConsumer:
    """One partition whose offsets ``bad`` fail to decode, as aiokafka 0.14 fails them.

    Call number ``rebalance_at`` of ``getmany`` first runs a whole rebalance
    (revoked, then assigned) through the service's listener, as aiokafka's
    coordinator task would while the fetch waits.
    """

    values: list[bytes]
    bad: range
    service: ConversationService
    rebalance_at: int
    calls: int = 0
    position_: int = 0
    jump: int | None = None
    rebalanced: bool = False
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def position(self, tp: TopicPartition) -> int:
        return self.position_

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position_ = offset
        self.jump = None

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return len(self.values)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.values)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int = 1_000) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.calls += 1
        if self.calls == self.rebalance_at:
            self.rebalanced = True
            await self.service.revoked({TP})
            await self.service.assigned({TP})
        if self.jump is not None:  # the iterator that raised ends past what it handed out
            self.position_, self.jump = self.jump, None
            return {}
        out: list[ConsumerRecord] = []
        for offset in range(self.position_, len(self.values)):
            if offset in self.bad:
                if out:
                    self.jump = out[-1].offset + 1
                raise UnsupportedCodecError("no such codec")
            out.append(ConsumerRecord(TP.topic, TP.partition, offset, 0, 0, b"ws:c1",
                                      self.values[offset], None, 1, 1, []))
            if len(out) == max_records:
                break
        if out:
            self.position_ = out[-1].offset + 1
        return {TP: out} if out else {}


async def consume(tmp: Path, rebalance_at: int, batch_records: int | None = None
                  ) -> tuple[list[str], int, int | None, bool]:
    stores = open_stores(Settings(database_url=str(tmp / f"r{rebalance_at}.db")))
    try:
        service = ConversationService(
            bootstrap="unused", topics=TOPICS, group_prefix="t",
            tuning=KafkaTuning(max_poll_records=2) if batch_records else KafkaTuning(),
            events=stores.events, metrics=RuntimeMetrics(), health=Health(),
            batch_records=batch_records)
        consumer = RebalancingConsumer(command_values(), range(GOOD_BEFORE, GOOD_BEFORE + BAD),
                                       service, rebalance_at)
        service._consumer = consumer  # type: ignore[assignment]
        fetch = SafeFetch(consumer, service="conversation")  # type: ignore[arg-type]
        await service.assigned({TP})
        last = len(consumer.values) - 1
        for _ in range(200):
            await service._round(consumer, fetch)  # type: ignore[arg-type]
            if service._pending is None and stores.events.position(f"{TP.topic}:0") == last \
                    and consumer.calls >= rebalance_at:
                break
        async with service._busy:
            await service._settle()
        position = stores.events.position(f"{TP.topic}:0")
        with sqlite3.connect(tmp / f"r{rebalance_at}.db") as conn:
            reasons = [r for (r,) in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
            accepted = conn.execute("SELECT count(*) FROM processed_events").fetchone()[0]
        return reasons, accepted, position, consumer.rebalanced
    finally:
        stores.close()


@pytest.mark.parametrize("batch_records", [None, 2], ids=["default-tuning", "two-record-fetches"])
@pytest.mark.parametrize("rebalance_at", range(1, 16))
def test_a_rebalance_during_any_fetch_call_handles_each_record_once(
        tmp_path: Path, rebalance_at: int, batch_records: int | None) -> None:
    """``two-record-fetches``: each fetch is decided while the previous one commits."""
    reasons, accepted, position, rebalanced = asyncio.run(
        consume(tmp_path, rebalance_at, batch_records))
    assert rebalanced
    offsets = sorted(int(r.split("@", 1)[1].split(":", 1)[0]) for r in reasons)
    assert offsets == list(range(GOOD_BEFORE, GOOD_BEFORE + BAD)), reasons
    assert accepted == GOOD_BEFORE + GOOD_AFTER
    assert position == GOOD_BEFORE + BAD + GOOD_AFTER - 1
