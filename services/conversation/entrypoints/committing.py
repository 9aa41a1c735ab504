"""The conversation service's commit pipeline: decide a fetch, commit it in order, settle.

:class:`BatchCommitting` is the half of
:class:`~services.conversation.entrypoints.kafka.ConversationService` that feeds
the :class:`BatchUnitOfWork`: one decided group's transaction runs in a worker
thread (the commit in flight) while the next fetch is decided; settling it
counts the batch and its lag, and Kafka offsets are committed afterwards, at
most once a second, for lag tooling only. Its state is set by the service's
constructor; partition assignment and recovery stay in the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.conversation.application.ports import Position, Positions
from services.conversation.application.processor import BatchResult
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.entrypoints.records import (
    DEAD_LETTER_SOURCE,
    SERVICE,
    Batches,
    Group,
    Records,
    _Decided,
    _Held,
    _Read,
    position_name,
    read_group,
)
from services.runtime.kafka import RecordBatches, commit_assigned, record_lag
from services.runtime.observability import RuntimeMetrics, tally_ingest

#: the service's logger, as before these methods moved out of its module
log = logging.getLogger("services.conversation.entrypoints.kafka")
LAG_COMMIT_SECONDS = 1.0


class BatchCommitting:
    """Decides fetched batches and commits them in order, one transaction in flight."""

    uow: BatchUnitOfWork
    many_positions: bool
    metrics: RuntimeMetrics
    _consumer: AIOKafkaConsumer | None
    _unpositioned: set[TopicPartition]
    _after: dict[TopicPartition, int]
    _pending: _Decided | None
    #: a full fetch held for the next round while its store read runs (:meth:`_step`)
    _held: _Held | None
    #: the thread of the store reads started ahead (``BatchUnitOfWork.fill_ahead``)
    _reader: ThreadPoolExecutor
    #: hold full fetches and read their store answers ahead (``BONYCHAT_CONVERSATION_READ_AHEAD``)
    read_ahead: bool
    batch_records: int
    _generation: int
    _done: dict[TopicPartition, int]
    _lag_committed: float
    #: the gateway topic when the service reads it itself (None: commands only)
    gateway_topic: str | None
    dlq_topic: str
    producer: AIOKafkaProducer | None
    _dlq_partitions: dict[str, list[int]]

    async def _step(self, consumer: AIOKafkaConsumer, batches: Batches,
                    held: _Held | None = None) -> None:
        """Decide this fetch while the previous one commits; then start its commit.

        Deciding fetch N+1 (decode, dedupe against storage and N's keys in
        flight, apply to the cached aggregates) overlaps PostgreSQL's work on
        fetch N's transaction; N+1 is committed only after N, so commits stay in
        order, and N+1's positions say they continue from N's. If N's commit
        fails, N+1 is dropped with the caches and everything resumes from
        storage's positions (:meth:`ConversationService._recover`).

        Under a backlog (a full fetch, with ``read_ahead``) the fetch is held for
        the next round instead: the deciding thread decodes it first and starts
        its store read (dedupe probe, uncached contacts, settings:
        :meth:`BatchUnitOfWork.prepare_ahead`, then ``fill_ahead`` on the reader
        thread), then decides ``held`` -- the fetch held by the previous round --
        with the answer its own read got meanwhile. The read waits on PostgreSQL
        while Python decides; decoding and deciding stay on one thread.
        """
        start: _Held | None = None  # to hold: decoded, its read started, by the next job
        units: list[tuple[Batches, _Held | None]] = []
        if held is not None:
            units.append((held.batches, held))
        if batches and self.read_ahead and self._full(batches):
            start = self._held = self._hold(consumer, batches)
        if batches and start is None:
            units.append((batches, None))
        for unit, unit_held in units:
            await self._decide_unit(consumer, unit, unit_held, start)
            start = None
        if start is not None or not units:
            if start is not None:
                await asyncio.to_thread(self._start_read, start)
            await self._settle()

    def _follows(self, batches: Batches, held: _Held | None = None) -> bool:
        """Each partition's records ascend from after the last offset decided (or held)."""
        after = self._after if held is None else {**self._after, **{
            tp: records[-1].offset for tp, records in held.batches.items() if records}}
        for tp, records in batches.items():
            previous = after.get(tp, -1)
            for record in records:
                if record.offset <= previous:
                    log.warning("a fetch repeated records; resuming from the tracked positions",
                                extra={"partition": tp.partition, "offset": record.offset,
                                       "after": previous})
                    return False
                previous = record.offset
        return True

    def _full(self, batches: Batches) -> bool:
        return sum(len(records) for records in batches.values()) >= self.batch_records

    def _groups(self, consumer: AIOKafkaConsumer, batches: Batches) -> list[Group]:
        """The groups of ``batches`` to decide (one transaction each), in order."""
        assignment = consumer.assignment()
        jobs = [(tp, records) for tp, records in batches.items()
                if records and tp in assignment  # revoked meanwhile: the new owner resumes
                and tp not in self._unpositioned]
        if not jobs:
            return []
        return [jobs] if self.many_positions else [[job] for job in jobs]

    def _hold(self, consumer: AIOKafkaConsumer, batches: Batches) -> _Held | None:
        """``batches`` held for the next round (None: several transactions, not held)."""
        groups = self._groups(consumer, batches)
        return _Held(batches, self._generation, groups[0]) if len(groups) == 1 else None

    def _start_read(self, held: _Held) -> None:
        """Decode a held group; start the store read of what deciding it needs (the
        deciding thread; the read itself runs on the reader thread)."""
        out = self._dead_letter_batches()
        items, gateway_items = read_group(held.group, self.gateway_topic, self.dlq_topic, out)
        ahead = self.uow.prepare_ahead(items)
        held.read = _Read(held.group, items, gateway_items, out, ahead,
                          self._reader.submit(self.uow.fill_ahead, ahead))

    def _drop_held(self) -> None:
        """The held fetch will not be decided (a rebalance, a seek, a failure)."""
        held, self._held = self._held, None
        if held is not None and held.read is not None:
            self.uow.drop_ahead(held.read.ahead)

    async def _decide_unit(self, consumer: AIOKafkaConsumer, batches: Batches,
                           held: _Held | None, start: _Held | None) -> None:
        """Decide one fetch's groups in order, each committed after the previous one;
        the first job starts the read of ``start`` first."""
        read = held.read if held is not None else None
        groups = self._groups(consumer, batches)
        if not groups and read is not None:
            self.uow.drop_ahead(read.ahead)
        for group in groups:
            try:
                decided = await asyncio.to_thread(self._decide_ahead, group, read, start)
            except BaseException:
                await self._settle()
                raise
            read = start = None  # the first group's
            for tp, records in group:  # N+1 continues from here, once N is stored
                self._after[tp] = records[-1].offset
            # N+1's DLQ records go out while N commits; N+1 commits after their acks
            out = decided.dead_letters
            acks = await out.submit() if out is not None and out.records else []
            await self._settle()  # raises if N failed: N+1 is dropped
            decided.commit = asyncio.ensure_future(self._write(decided, acks))
            self._pending = decided
        if start is not None:  # nothing decided here
            await asyncio.to_thread(self._start_read, start)
        if not groups:
            await self._settle()

    async def _write(self, decided: _Decided, acks: list[asyncio.Future[Any]]) -> BatchResult:
        """The transaction of ``decided``, once the broker has its DLQ records.

        At-least-once, as ingest: a DLQ record is acknowledged before the position
        moves past its gateway record; a failure in between (or of the produce,
        which fails the commit) reads the record again, and it may be
        dead-lettered twice.
        """
        if acks:
            await asyncio.gather(*acks)
        return await asyncio.to_thread(self.uow.write, decided.decision, decided.position)

    def _position(self, tp: TopicPartition, records: Records) -> Position:
        """Where this batch of ``tp`` ends, and where storage must have it continue from."""
        return Position(position_name(tp), records[-1].offset, self._after.get(tp))

    def _dead_letter_batches(self) -> RecordBatches | None:
        """Where a group's invalid gateway records go (None: commands only)."""
        if self.gateway_topic is None or self.producer is None:
            return None
        return RecordBatches(self.producer, self._dlq_partitions)

    def _decide_ahead(self, group: Group, read: _Read | None = None,
                      start: _Held | None = None) -> _Decided:
        """Decode and decide a group (worker thread); ``read``: its read ahead, if any;
        ``start``: a held fetch whose read to start first."""
        if start is not None:
            self._start_read(start)
        started = time.perf_counter()
        if read is not None and read.same_group(group):
            read.filled.result()  # the store read, on the reader thread: done by now, mostly
            items, gateway_items, out = read.items, read.gateway_items, read.dead_letters
            ahead = read.ahead
        else:
            if read is not None:  # the partitions moved meanwhile: decoded again
                self.uow.drop_ahead(read.ahead)
            out, ahead = self._dead_letter_batches(), None
            items, gateway_items = read_group(group, self.gateway_topic, self.dlq_topic, out)
        positions = [self._position(tp, records) for tp, records in group]
        position = positions[0] if len(positions) == 1 else Positions(
            positions[0].name, positions[0].offset, positions[0].after,
            others=tuple(positions[1:]))
        # tallied here, while the items are in the cache (counted when it settles)
        tally = tally_ingest(gateway_items) if gateway_items else None
        decision = self.uow.decide(items, DEAD_LETTER_SOURCE, ahead=ahead)
        return _Decided(group, decision, position, started, ingest_tally=tally,
                        dead_letters=out)

    async def _settle(self) -> None:
        """Wait for the commit in flight; if it failed, forget and raise.

        Whatever was decided on top of a failed commit is stale, and so may be
        any position this process believes stored (a conflict: another copy
        moved it; a lost connection: the commit may or may not have happened),
        so the caller resumes from storage's positions instead of retrying here
        (see :meth:`ConversationService._recover`).
        """
        pending, self._pending = self._pending, None
        if pending is None or pending.commit is None:
            return
        try:
            result = await pending.commit
        except Exception:
            self.uow.forget()  # its unsaved state (and anything decided on top)
            raise
        self.uow.settle(pending.decision)
        self.metrics.count_batch(pending.decision.items, result, DEAD_LETTER_SOURCE)
        if pending.ingest_tally is not None:  # as ingest counted what it forwarded
            self.metrics.count_ingest_tally(pending.ingest_tally, "kafka")
        for tp, records in pending.group:
            self._observe(tp, records, pending.started)

    def _observe(self, tp: TopicPartition, records: Records, started: float) -> None:
        self._done[tp] = records[-1].offset + 1
        self.metrics.batch_size.labels(SERVICE).observe(len(records))
        self.metrics.batch_seconds.labels(SERVICE).observe(time.perf_counter() - started)
        consumer = self._consumer
        lag = record_lag(consumer, tp, self._done[tp]) if consumer is not None else None
        if lag is not None:
            self.metrics.consumer_lag.labels(SERVICE, tp.topic, str(tp.partition)).set(lag)

    async def _commit_for_lag(self, consumer: AIOKafkaConsumer, force: bool = False) -> None:
        """Kafka offsets mirror the PG positions for lag tooling; never read back."""
        now = time.monotonic()
        if not self._done or (not force and now - self._lag_committed < LAG_COMMIT_SECONDS):
            return
        offsets, self._done = self._done, {}
        self._lag_committed = now
        try:
            await commit_assigned(consumer, offsets)
        except KafkaError as exc:
            log.debug("lag-only offset commit skipped: %s", exc)
