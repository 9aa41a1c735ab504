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
    _done: dict[TopicPartition, int]
    _lag_committed: float
    #: the gateway topic when the service reads it itself (None: commands only)
    gateway_topic: str | None
    dlq_topic: str
    producer: AIOKafkaProducer | None
    _dlq_partitions: dict[str, list[int]]

    async def _step(self, consumer: AIOKafkaConsumer, batches: Batches) -> None:
        """Decide this fetch while the previous one commits; then start its commit.

        Deciding fetch N+1 (decode, dedupe against storage and N's keys in
        flight, apply to the cached aggregates) overlaps PostgreSQL's work on
        fetch N's transaction; N+1 is committed only after N, so commits stay in
        order, and N+1's positions say they continue from N's. If N's commit
        fails, N+1 is dropped with the caches and everything resumes from
        storage's positions (:meth:`ConversationService._recover`).
        """
        assignment = consumer.assignment()
        jobs = [(tp, records) for tp, records in batches.items()
                if records and tp in assignment  # revoked meanwhile: the new owner resumes
                and tp not in self._unpositioned]
        if not jobs:
            await self._settle()
            return
        groups = [jobs] if self.many_positions else [[job] for job in jobs]
        for group in groups:
            try:
                decided = await asyncio.to_thread(self._decide_ahead, group)
            except BaseException:
                await self._settle()
                raise
            for tp, records in group:  # N+1 continues from here, once N is stored
                self._after[tp] = records[-1].offset
            # N+1's DLQ records go out while N commits; N+1 commits after their acks
            out = decided.dead_letters
            acks = await out.submit() if out is not None and out.records else []
            await self._settle()  # raises if N failed: N+1 is dropped
            decided.commit = asyncio.ensure_future(self._write(decided, acks))
            self._pending = decided

    def _follows(self, batches: Batches) -> bool:
        """Each partition's records ascend from after the last offset decided."""
        for tp, records in batches.items():
            previous = self._after.get(tp, -1)
            for record in records:
                if record.offset <= previous:
                    log.warning("a fetch repeated records; resuming from the tracked positions",
                                extra={"partition": tp.partition, "offset": record.offset,
                                       "after": previous})
                    return False
                previous = record.offset
        return True

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

    def _decide_ahead(self, group: Group) -> _Decided:
        """Decode and decide a group (worker thread)."""
        started = time.perf_counter()
        gateway = self.gateway_topic
        out = (RecordBatches(self.producer, self._dlq_partitions)
               if gateway is not None and self.producer is not None else None)
        items, gateway_items = read_group(group, gateway, self.dlq_topic, out)
        positions = [self._position(tp, records) for tp, records in group]
        position = positions[0] if len(positions) == 1 else Positions(
            positions[0].name, positions[0].offset, positions[0].after,
            others=tuple(positions[1:]))
        # tallied here, while the items are in the cache (counted when it settles)
        tally = tally_ingest(gateway_items) if gateway_items else None
        decision = self.uow.decide(items, DEAD_LETTER_SOURCE)
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
