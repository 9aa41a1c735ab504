"""The Kafka DLQ topic as the operator commands read it (Kafka runtime only).

The topic stays the source of Kafka-side dead letters: nothing copies it. A
record's id is ``dlq-PARTITION-OFFSET`` of the DLQ topic itself; the gateway
record it came from is in its ``original_partition`` / ``original_offset``
headers. Listing reads the whole topic (no consumer group). ``retry --all``
uses the consumer group ``{prefix}-dlq-retry`` as a *watermark*: on each
partition its committed offset is the first record not yet resolved by a
retry, so a pass reads only from there to the end offsets it found at its
start, and moves the watermark after recording what it retried. Offsets are
committed only by the retry command (manual assignment, never a group member).

Methods are synchronous (each runs its own event loop); call them from a
worker thread inside an event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from services.dead_letters.application.ports import (
    DeadLetterEntry,
    DeadLetterFilter,
    entry_id,
    parse_entry_id,
)
from services.runtime.fetch import SafeFetch, UndecodableRecord
from services.runtime.kafka import client_id, header

Record: TypeAlias = ConsumerRecord[bytes, bytes]
#: no record for this long while records are still due: the broker is gone
STALL_SECONDS = 30.0


def identify(raw: str) -> tuple[str | None, str | None]:
    """The ``workspace_id`` and ``event_id`` of a raw envelope, when it names them."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    ws, eid = obj.get("workspace_id"), obj.get("event_id")
    return (ws if isinstance(ws, str) else None), (eid if isinstance(eid, str) else None)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def to_entry(record: Record) -> DeadLetterEntry:
    """A DLQ record as a dead letter entry (its retry is filled in by the caller)."""
    headers = list(record.headers or ())
    if isinstance(record, UndecodableRecord):  # the DLQ record itself cannot be read
        headers = [("reason", record.reason.encode())]
    raw = (record.value or b"").decode("utf-8", errors="replace")
    workspace_id, event_id = identify(raw)
    return DeadLetterEntry(
        id=entry_id(record.partition, record.offset),
        received_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        source=header(headers, "source") or "kafka",
        reason=header(headers, "reason") or "(no reason header)",
        raw=raw, workspace_id=workspace_id, event_id=event_id,
        partition=_int(header(headers, "original_partition")),
        offset=_int(header(headers, "original_offset")))


class KafkaDeadLetterQueue:
    """:class:`~services.dead_letters.application.ports.DeadLetterQueue` on the DLQ topic."""

    def __init__(self, *, bootstrap: str, topic: str, retry_group: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.retry_group = retry_group

    def entries(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        records = asyncio.run(self._read(None, None))
        return [e for e in map(to_entry, records) if where.matches(e)]

    def by_id(self, ids: Sequence[str]) -> list[DeadLetterEntry]:
        wanted = [p for p in map(parse_entry_id, ids) if p is not None]
        return [to_entry(r) for r in asyncio.run(self._fetch(wanted))]

    def unresolved(self) -> tuple[list[DeadLetterEntry], dict[int, int]]:
        ends: dict[int, int] = {}
        records = asyncio.run(self._read(self.retry_group, ends))
        return [to_entry(r) for r in records], ends

    def commit_watermark(self, offsets: Mapping[int, int]) -> None:
        if offsets:
            asyncio.run(self._commit(offsets))

    async def _consumer(self, group: str | None) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, client_id=client_id("dlq-reader"),
            group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
            request_timeout_ms=15_000)
        await consumer.start()
        try:
            parts = await self._partitions()
        except BaseException:
            await consumer.stop()
            raise
        tps = [TopicPartition(self.topic, p) for p in parts]
        if tps:
            consumer.assign(tps)
        return consumer, tps

    async def _partitions(self) -> list[int]:
        """The topic's partitions (none if it does not exist).

        Asked of the broker: the consumer's ``partitions_for_topic`` only knows
        topics it subscribed to or was assigned (``topics()`` does not add them).
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                    client_id=client_id("dlq-reader"), request_timeout_ms=15_000)
        await admin.start()
        try:
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        return sorted(p["partition"] for t in described
                      if t["topic"] == self.topic and t["error_code"] == 0
                      for p in t["partitions"])

    async def _read(self, group: str | None, ends_out: dict[int, int] | None) -> list[Record]:
        """Every record from the group's committed offsets (or the start) to today's end."""
        consumer, tps = await self._consumer(group)
        try:
            if not tps:
                return []
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            for tp in tps:
                committed = await consumer.committed(tp) if group is not None else None
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
                if ends_out is not None:
                    ends_out[tp.partition] = ends[tp]
            return await self._drain(consumer, tps, ends)
        finally:
            await consumer.stop()

    @staticmethod
    async def _drain(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                     ends: Mapping[TopicPartition, int]) -> list[Record]:
        out: list[Record] = []
        due = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        last = time.monotonic()
        fetch = SafeFetch(consumer, service="dlq-reader")  # an undecodable batch: entries
        while due:
            batches = await fetch.getmany(*due, timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                out.extend(r for r in records if r.offset < ends[tp])
            if batches:
                last = time.monotonic()
            elif time.monotonic() - last > STALL_SECONDS:
                raise TimeoutError(f"no records from the DLQ topic {tps[0].topic} for "
                                   f"{STALL_SECONDS:.0f} s while {len(due)} partitions were due")
            due = {tp for tp in due if await consumer.position(tp) < ends[tp]}
        out.sort(key=lambda r: (r.partition, r.offset))
        return out

    async def _fetch(self, wanted: Sequence[tuple[int, int]]) -> list[Record]:
        """The records at these (partition, offset) positions that still exist."""
        consumer, tps = await self._consumer(None)
        try:
            known = {tp.partition: tp for tp in tps}
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps) if tps else {}
            found: list[Record] = []
            for partition, offset in sorted(set(wanted)):
                tp = known.get(partition)
                if tp is None or offset >= ends[tp]:
                    continue
                consumer.seek(tp, offset)
                records = await self._drain(consumer, [tp], {tp: offset + 1})
                found.extend(r for r in records if r.offset == offset)
            return found
        finally:
            await consumer.stop()

    async def _commit(self, offsets: Mapping[int, int]) -> None:
        consumer, tps = await self._consumer(self.retry_group)
        try:
            known = {tp.partition: tp for tp in tps}
            commit: dict[TopicPartition, Any] = {
                known[p]: OffsetAndMetadata(o, "") for p, o in offsets.items() if p in known}
            if commit:
                await consumer.commit(commit)
        finally:
            await consumer.stop()
