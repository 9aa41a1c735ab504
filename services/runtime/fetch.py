"""Fetching from Kafka without stopping at records that cannot be decoded.

aiokafka decompresses a record batch while ``getmany`` hands out its records. A
batch it cannot decode (a codec whose library is missing, a corrupt payload, a
CRC mismatch) makes ``getmany`` raise -- with no word of the partition -- and
the batch stays at the partition's position, so every later call (and every
restart) raises again: one bad batch would halt the service for good. Worse,
records ``getmany`` had already taken from other partitions in that call are
lost from its buffer (their positions moved on).

:class:`SafeFetch` wraps ``getmany``. It notes each partition's position before
the call; when the call fails with a decoding error, it rewinds every partition
to that position (never forward), then reads the partitions one at a time, so
the error belongs to one partition, stepping one record at a time through the
failing one. Each offset that fails on two fresh fetches becomes an
:class:`UndecodableRecord` (offset, reason) in the returned records, in offset
order, and the consumer seeks past it. The services treat it as a dead letter
(the DLQ topic in ingest, the dead-letter store in the conversation service), so
their usual offset commit or position tracking moves past it: nothing blocks
the partition, and nothing vanishes without a dead letter, a log line and
``bonychat_undecodable_records_total``. A failure that does not repeat on a
fresh fetch (a transient one) loses nothing.
"""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    IllegalStateError,
    KafkaError,
    UnsupportedCodecError,
)

from services.runtime.kafka import FetchHold
from services.runtime.observability import RuntimeMetrics

log = logging.getLogger(__name__)

Records = list[ConsumerRecord[bytes, bytes]]
Batches = dict[TopicPartition, Records]


@dataclass(eq=False)
class UndecodableRecord(ConsumerRecord):  # type: ignore[misc]
    """The place of a record that could not be decoded; ``value`` is None."""

    reason: str = ""


def undecodable(tp: TopicPartition, offset: int, error: BaseException) -> UndecodableRecord:
    detail = " ".join(f"{type(error).__name__}: {error}".split())[:500]
    return UndecodableRecord(
        topic=tp.topic, partition=tp.partition, offset=offset, timestamp=int(time.time() * 1000),
        timestamp_type=0, key=None, value=None, checksum=None, serialized_key_size=-1,
        serialized_value_size=-1, headers=[],
        reason=f"undecodable record at {tp.topic}:{tp.partition}@{offset}: {detail}")


def is_undecodable(error: BaseException) -> bool:
    """Whether ``getmany`` failed on the data rather than on the fetch.

    aiokafka raises ``UnsupportedCodecError`` and ``CorruptRecordException`` for
    batches it cannot read; the codec libraries raise their own types (cramjam's
    ``DecompressionError``, ``zlib.error``, ``EOFError``...). Every other
    ``KafkaError`` is about the fetch itself (authorisation, stopped consumer,
    out of range) and is not a property of a record.
    """
    if isinstance(error, UnsupportedCodecError | CorruptRecordException):
        return True
    return isinstance(error, Exception) and not isinstance(error, KafkaError)


class SafeFetch:
    """``consumer.getmany`` that turns undecodable records into :class:`UndecodableRecord`."""

    def __init__(self, consumer: AIOKafkaConsumer, *, service: str,
                 metrics: RuntimeMetrics | None = None, probe_ms: int = 500,
                 hold: FetchHold | None = None) -> None:
        self.consumer = consumer
        #: told what each poll found, to hold fetches only while records flow
        self.hold = hold
        self.service = service
        self.metrics = metrics
        #: how long one partition's fresh fetch may take while isolating a failure
        self.probe_ms = probe_ms

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int,
                      max_records: int) -> Batches:
        """``consumer.getmany(*partitions, ...)``; all assigned partitions if none given."""
        consumer = self.consumer
        before = await self._positions()
        try:
            batches: Batches = await consumer.getmany(*partitions, timeout_ms=timeout_ms,
                                                      max_records=max_records)
        except Exception as exc:
            if not is_undecodable(exc):
                raise
            log.warning("a fetched batch could not be decoded; reading partitions one by one",
                        extra={"service": self.service,
                               "error": f"{type(exc).__name__}: {exc}"[:300]})
            return await self._isolate(before, max_records, partitions)
        if self.hold is not None:
            self.hold.saw(sum(len(records) for records in batches.values()), timeout_ms)
        return batches

    async def _positions(self) -> dict[TopicPartition, int]:
        """Each assigned partition's position (the next offset ``getmany`` hands out)."""
        found = {}
        for tp in self.consumer.assignment():
            try:
                found[tp] = await self.consumer.position(tp)
            except IllegalStateError:  # revoked meanwhile
                continue
        return found

    async def _isolate(self, before: dict[TopicPartition, int], max_records: int,
                       partitions: tuple[TopicPartition, ...]) -> Batches:
        consumer = self.consumer
        assigned = consumer.assignment()
        for tp, offset in before.items():
            if tp in assigned:  # rewind what the failed call took; never skip forward
                try:
                    consumer.seek(tp, min(offset, await consumer.position(tp)))
                except IllegalStateError:
                    continue  # revoked meanwhile: its next owner starts from the commit
        found: Batches = {}
        budget = max_records
        for tp in sorted(assigned.intersection(partitions) if partitions else assigned):
            records = await self._partition(tp, budget)
            if records:
                found[tp] = records
                budget -= len(records)
            if budget <= 0:
                break
        return found

    async def _partition(self, tp: TopicPartition, budget: int) -> Records:
        """One partition's buffered records; step through it if it fails to decode."""
        consumer = self.consumer
        try:
            start = await consumer.position(tp)
            got = await consumer.getmany(tp, timeout_ms=self.probe_ms, max_records=budget)
        except IllegalStateError:
            return []
        except Exception as exc:
            if not is_undecodable(exc):
                raise
        else:
            return list(got.get(tp, []))
        out: Records = []
        with suppress(IllegalStateError):  # revoked meanwhile: the next owner resumes
            await self._step(tp, start, budget, out)
        return out

    async def _step(self, tp: TopicPartition, start: int, budget: int, out: Records) -> None:
        """Read ``tp`` one record at a time from ``start``, skipping undecodable offsets."""
        consumer = self.consumer
        consumer.seek(tp, start)  # the failed call may have moved past good records
        failed = False
        retried = -1
        while len(out) < budget:
            try:
                got = await consumer.getmany(tp, timeout_ms=self.probe_ms, max_records=1)
            except Exception as exc:
                if not is_undecodable(exc):
                    raise
                offset = await consumer.position(tp)
                if offset != retried:  # read it once more, from the broker
                    retried = offset
                    consumer.seek(tp, offset)
                    continue
                out.append(self._skip(tp, offset, exc))
                consumer.seek(tp, offset + 1)
                failed = True
                continue
            records = got.get(tp, [])
            if not records:
                break
            out.extend(records)
            if failed:  # past the bad records: the next regular fetch goes on from here
                return

    def _skip(self, tp: TopicPartition, offset: int, error: BaseException) -> UndecodableRecord:
        record = undecodable(tp, offset, error)
        log.error("skipping a record that cannot be decoded (dead-lettered)",
                  extra={"service": self.service, "topic": tp.topic, "partition": tp.partition,
                         "offset": offset, "reason": record.reason})
        if self.metrics is not None:
            self.metrics.undecodable.labels(self.service, tp.topic).inc()
        return record
