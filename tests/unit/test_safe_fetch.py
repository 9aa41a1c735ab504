"""SafeFetch: a record batch that cannot be decoded neither blocks its partition nor vanishes.

The fake consumer behaves as aiokafka 0.14 does when a batch fails to decode:
``getmany`` raises without naming the partition; partitions it already drained
in that call have moved on (their records are lost from the buffer); records
of the failing partition handed out before the error are skipped by the next
call (aiokafka's exhausted iterator moves the position past them); the batch
stays at the position and fails again on every fetch until the consumer seeks
past it. Over random logs, every offset must come out exactly once, in order,
as a record or as an :class:`UndecodableRecord` for exactly the bad batches.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, UnsupportedCodecError
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.runtime.fetch import SafeFetch, UndecodableRecord, is_undecodable
from services.runtime.observability import RuntimeMetrics

TOPIC = "gateway"


@dataclass
class Batch:
    base: int
    count: int
    bad: bool = False
    flaky: int = 0  # fails this many times, then decodes (a transient failure)


@dataclass
class FakeConsumer:
    """aiokafka's buffer semantics around a batch that fails to decode."""

    logs: dict[TopicPartition, list[Batch]]
    order: list[TopicPartition]
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    jump: dict[TopicPartition, int] = field(default_factory=dict)
    error: Exception = field(default_factory=lambda: UnsupportedCodecError("no lz4 library"))

    def __post_init__(self) -> None:
        self.positions = dict.fromkeys(self.logs, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.logs)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset
        self.jump.pop(tp, None)

    def _records(self, tp: TopicPartition, limit: int) -> list[ConsumerRecord[bytes, bytes]]:
        """Up to ``limit`` records from the position; raises on a bad batch."""
        if tp in self.jump:  # the iterator that raised ends: the position moves past
            self.positions[tp] = self.jump.pop(tp)
            return []
        out: list[ConsumerRecord[bytes, bytes]] = []
        position = self.positions[tp]
        for batch in self.logs[tp]:
            if batch.base + batch.count <= position:
                continue
            if batch.bad or batch.flaky:
                batch.flaky = max(0, batch.flaky - 1)
                if out:
                    self.jump[tp] = out[-1].offset + 1  # handed out, then lost
                raise self.error
            for offset in range(max(position, batch.base), batch.base + batch.count):
                out.append(ConsumerRecord(TOPIC, tp.partition, offset, 0, 0, b"k",
                                          f"v{tp.partition}-{offset}".encode(), None, 1, 1, []))
                if len(out) == limit:
                    self.positions[tp] = offset + 1
                    return out
        if out:
            self.positions[tp] = out[-1].offset + 1
        return out

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int = 1_000) -> dict[TopicPartition, list[ConsumerRecord]]:
        drained: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp in self.order:
            if partitions and tp not in partitions:
                continue
            records = self._records(tp, max_records)  # raises: drained records are lost
            if records:
                drained[tp] = records
                max_records -= len(records)
                if max_records == 0:
                    break
        return drained


def layout(draw: st.DrawFn) -> dict[TopicPartition, list[Batch]]:
    logs = {}
    for partition in range(draw(st.integers(1, 4))):
        batches, base = [], 0
        for _ in range(draw(st.integers(0, 6))):
            count = draw(st.integers(1, 5))
            kind = draw(st.sampled_from(("good", "good", "bad", "flaky")))
            batches.append(Batch(base, count, bad=kind == "bad",
                                 flaky=1 if kind == "flaky" else 0))
            base += count
        logs[TopicPartition(TOPIC, partition)] = batches
    return logs


def drain(consumer: FakeConsumer, fetch: SafeFetch, max_records: int
          ) -> dict[TopicPartition, list[ConsumerRecord]]:
    seen: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in consumer.logs}

    async def run() -> None:
        for _ in range(500):
            batches = await fetch.getmany(timeout_ms=0, max_records=max_records)
            for tp, records in batches.items():
                assert len(records) <= max_records
                seen[tp].extend(records)
            if not batches and all(consumer.positions[tp] >= end(consumer.logs[tp])
                                   for tp in consumer.logs):
                return
        raise AssertionError("no progress")

    asyncio.run(run())
    return seen


def end(batches: list[Batch]) -> int:
    return batches[-1].base + batches[-1].count if batches else 0


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[TopicPartition, list[Batch]], list[int], int]:
    logs = layout(draw)
    order = draw(st.permutations(sorted(logs)))
    return logs, [tp.partition for tp in order], draw(st.integers(1, 12))


@settings(max_examples=200, deadline=None)
@given(cases())
def test_every_offset_once_in_order_bad_ones_as_dead_letters(
        case: tuple[dict[TopicPartition, list[Batch]], list[int], int]) -> None:
    logs, order, max_records = case
    consumer = FakeConsumer(logs, [TopicPartition(TOPIC, p) for p in order])
    metrics = RuntimeMetrics(CollectorRegistry())
    fetch = SafeFetch(consumer, service="ingest", metrics=metrics)  # type: ignore[arg-type]
    seen = drain(consumer, fetch, max_records)
    bad_total = 0
    for tp, batches in logs.items():
        bad = {o for b in batches if b.bad for o in range(b.base, b.base + b.count)}
        bad_total += len(bad)
        got = seen[tp]
        assert [r.offset for r in got] == list(range(end(batches))), tp
        assert {r.offset for r in got if isinstance(r, UndecodableRecord)} == bad, tp
        for r in got:
            if isinstance(r, UndecodableRecord):
                assert r.value is None
                assert r.reason.startswith(f"undecodable record at {TOPIC}:{tp.partition}"
                                           f"@{r.offset}: UnsupportedCodecError")
            else:
                assert r.value == f"v{tp.partition}-{r.offset}".encode()
    counted = metrics.registry.get_sample_value(
        "bonychat_undecodable_records_total", {"service": "ingest", "topic": TOPIC})
    assert (counted or 0) == bad_total


def test_a_decoder_failure_of_another_type_is_handled_the_same() -> None:
    tp = TopicPartition(TOPIC, 0)
    consumer = FakeConsumer({tp: [Batch(0, 2), Batch(2, 3, bad=True), Batch(5, 1)]}, [tp],
                            error=OSError("Not a gzipped file"))
    seen = drain(consumer, SafeFetch(consumer, service="x"), 100)  # type: ignore[arg-type]
    assert [type(r) is UndecodableRecord for r in seen[tp]] == [False, False, True, True,
                                                                True, False]
    assert "OSError: Not a gzipped file" in seen[tp][2].reason


def test_errors_of_the_fetch_itself_are_not_skipped() -> None:
    tp = TopicPartition(TOPIC, 0)
    consumer = FakeConsumer({tp: [Batch(0, 2, bad=True)]}, [tp],
                            error=KafkaConnectionError("broker gone"))
    with pytest.raises(KafkaConnectionError):
        drain(consumer, SafeFetch(consumer, service="x"), 10)  # type: ignore[arg-type]
    assert consumer.positions[tp] == 0
    assert not is_undecodable(KafkaConnectionError("x"))
    assert is_undecodable(UnsupportedCodecError("x")) and is_undecodable(EOFError())
