"""The conversation service: command topic -> event store, exactly once.

A thin Kafka driver of the :class:`BatchUnitOfWork`: each fetch is decided and committed in ONE
database transaction together with its outcomes, dead letters and the consumed
position of every partition it covers (``{topic}:{partition}`` -> last offset).
That tracked position, not Kafka's committed offset, is where a partition
resumes: on assignment the consumer seeks to it. Kafka offsets are committed
afterwards, at most once a second, for lag tooling only.

Throughput comes from one transaction per fetch (per partition on a store that
does not record many positions at once), fetches topped up from the consumer's
buffer to ``BONYCHAT_KAFKA_BATCH_RECORDS`` under a backlog, and deciding the next
fetch while the previous one commits (:meth:`ConversationService._step`).

A failed transaction is not retried here: the unit of work forgets what was decided,
and every partition resumes from the position storage recorded (:meth:`_recover`).

This module holds the service itself: its consumer loop, the fetch, partition
assignment (seeking to the tracked positions) and recovery. Siblings hold the
rest: :mod:`.committing` (decide a fetch, commit it in order while the next is
decided, settle, the lag-only offset commit), :mod:`.records` (reading command
and gateway records, position names, a decided batch; re-exported here) and
:mod:`.handover` (``BONYCHAT_CONVERSATION_INPUT=gateway``: where ingest stopped).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from services.conversation.application.ports import (
    ConcurrencyConflict,
    EventStore,
    RecordsManyPositions,
)
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.entrypoints.committing import LAG_COMMIT_SECONDS, BatchCommitting
from services.conversation.entrypoints.handover import ingest_offsets
from services.conversation.entrypoints.records import (
    DEAD_LETTER_SOURCE,
    SERVICE,
    Batches,
    Group,
    Records,
    _Decided,
    decode,
    position_name,
)
from services.runtime.fetch import SafeFetch
from services.runtime.kafka import (
    FetchHold,
    make_consumer,
    partitions_of,
    partitions_text,
    start_consumer,
    subscribe,
)
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import Backoff, bounded, is_transient
from services.runtime.retry import describe as describe_error
from services.runtime.topics import KafkaTuning, Topics, group_id

__all__ = [
    "DEAD_LETTER_SOURCE", "LAG_COMMIT_SECONDS", "SERVICE", "Batches", "ConversationService",
    "Group", "Records", "decode", "position_name",
]

log = logging.getLogger(__name__)

HANDOVER_SECONDS = 10.0  #: the longest the look-up of ingest's offsets may take
FIRST_BATCH_RECORDS = 2_000  #: the first batch's most records (then doubling: _fetch)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ConversationService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.assigned(assigned)


class ConversationService(BatchCommitting):
    """Consumes commands and stores their outcome with the consumed position."""

    def __init__(self, *, bootstrap: str, topics: Topics, group_prefix: str,
                 tuning: KafkaTuning, events: EventStore, metrics: RuntimeMetrics,
                 health: Health, cache_size: int = 200_000,
                 batch_records: int | None = None,
                 producer: AIOKafkaProducer | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.group = group_id(group_prefix, SERVICE)
        self.tuning = tuning
        #: given a producer (for the DLQ), the service reads the gateway topic too
        #: (``BONYCHAT_CONVERSATION_INPUT=gateway``), its fetches held as ingest's are
        self.producer = producer
        self.gateway_topic = topics.gateway if producer is not None else None
        self.ingest_group, self.handover = group_id(group_prefix, "ingest"), ingest_offsets
        self.dlq_topic = topics.dlq
        self._dlq_partitions: dict[str, list[int]] = {}
        self.input_topics = [topics.commands] if producer is None else [
            topics.gateway, topics.commands]
        #: its consumer's: fetches answered at once by default (ingest batches by time)
        self.fetch_tuning = tuning.for_commands() if producer is None else tuning
        self.events = events
        self.uow = BatchUnitOfWork(events, cache_size=cache_size)
        #: records to gather per fetch (several fetches under a backlog)
        self.batch_records = batch_records or tuning.batch_records
        self._limit = min(self.batch_records, FIRST_BATCH_RECORDS)  # grows: :meth:`_fetch`
        #: one transaction may record several partitions' positions
        self.many_positions = isinstance(events, RecordsManyPositions)
        self.metrics = metrics
        self.health = health
        self._consumer: AIOKafkaConsumer | None = None
        self._busy = asyncio.Lock()  # a rebalance waits for the batch in flight
        #: assigned partitions not yet sought to their tracked position (store down)
        self._unpositioned: set[TopicPartition] = set()
        #: per partition, the offset storage records once every decided batch is
        #: stored (-1: none); each commit must find its partition exactly there
        self._after: dict[TopicPartition, int] = {}
        self._pending: _Decided | None = None  # committing in a worker thread
        self._done: dict[TopicPartition, int] = {}  # next offsets, for the lag-only commit
        self._lag_committed = 0.0
        #: counts rebalances: a fetch that overlapped one is not used (see :meth:`_round`)
        self._generation = 0
        health.expect(SERVICE)

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._busy:
            self._generation += 1
            try:
                await self._settle()
            except Exception as exc:  # the new owner resumes from the tracked position
                self._pending = None
                log.warning("commit in flight failed during a rebalance: %s", describe_error(exc))
            self.uow.forget()
            self._unpositioned -= revoked
            for tp in revoked:
                self._after.pop(tp, None)
        if revoked:
            log.info("partitions revoked", extra={"partitions": partitions_text(revoked)})

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Marks them unpositioned: the next round seeks them (no look-up here, as
        aiokafka heartbeats only once this returns; :meth:`_step` skips them until then)."""
        async with self._busy:
            self._generation += 1
            try:
                await self._settle()
            except Exception as exc:  # lost with the commit: resumed from storage
                self._pending = None
                log.warning("commit in flight failed during a rebalance: %s", describe_error(exc))
            self.uow.forget()  # another copy may have changed these aggregates
            self._unpositioned |= assigned

    async def _seek_tracked(self) -> None:
        """Seek every partition whose position is not known to its tracked position + 1.

        Until this succeeds, records of those partitions are not processed
        (:meth:`_step` skips them), whatever the consumer fetched meanwhile.
        """
        consumer = self._consumer
        assert consumer is not None
        todo = self._unpositioned & consumer.assignment()
        resume: dict[str, dict[str, int | None]] = {}
        for tp in sorted(todo):
            tracked = await asyncio.to_thread(self.events.position, position_name(tp))
            resume.setdefault(tp.topic, {})[str(tp.partition)] = tracked
            self._after[tp] = -1 if tracked is None else tracked
        # A gateway partition never tracked starts where ingest stopped (handover.py; offset
        # 0 before the log start: the earliest). Bounded: the rebalance callbacks wait for
        # this round (a TimeoutError is transient: sought again by a later round)
        start = await asyncio.wait_for(self.handover(self.bootstrap, self.ingest_group, {
            tp for tp in todo if tp.topic == self.gateway_topic and self._after[tp] == -1}),
            HANDOVER_SECONDS)
        for tp in sorted(todo):
            consumer.seek(tp, start.get(tp, 0) if self._after[tp] == -1 else self._after[tp] + 1)
        self._unpositioned = set()
        self._generation += 1  # a fetch that returned meanwhile read from before the seek
        for topic, tracked_of in resume.items():  # one line per topic
            log.info("partitions assigned", extra={
                "topic": topic, "partitions": sorted(map(int, tracked_of)),
                "resume_after": tracked_of, "from_ingest": {
                    str(p.partition): at for p, at in sorted(start.items()) if p.topic == topic}})
        self.health.set_ready(SERVICE)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; survives PostgreSQL outages in place (:meth:`_recover`).

        A failure that :meth:`_recover` cannot handle (Kafka itself) ends this
        call; :func:`.retry.retrying` runs it again with a fresh consumer.
        """
        consumer = make_consumer(self.bootstrap, self.fetch_tuning, topic=self.topics.commands,
                                 group=self.group, service=SERVICE,
                                 colocate=self.gateway_topic is not None)
        self._consumer = consumer
        fetch = SafeFetch(consumer, service=SERVICE, metrics=self.metrics,
                          hold=FetchHold(consumer, self.fetch_tuning))
        self._reset()
        if self.producer is not None:
            self._dlq_partitions = await partitions_of(self.producer, [self.dlq_topic])
        subscribe(consumer, self.input_topics, _Rebalance(self))
        await start_consumer(consumer)
        self._unpositioned |= consumer.assignment()  # assigned; the listener may be yet to run
        log.info("conversation service started",
                 extra={"topics": self.input_topics, "group": self.group})
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    await self._round(consumer, fetch)
                    backoff.reset()
                except Exception as exc:
                    if not is_transient(exc) or isinstance(exc, KafkaError):
                        raise
                    await self._recover(exc, stop, backoff)
            async with self._busy:
                await self._settle()
            await self._commit_for_lag(consumer, force=True)
        finally:
            self.health.set_ready(SERVICE, False)
            self._reset()
            await bounded(consumer.stop(), 10, "stopping the conversation consumer")
            log.info("conversation service stopped")

    async def _round(self, consumer: AIOKafkaConsumer, fetch: SafeFetch) -> None:
        """One fetch: decide it, start its commit (and settle the previous one).

        Unpositioned partitions are first sought to their tracked positions.
        A rebalance may land while a fetch waits; a fetch in flight (above
        all :class:`SafeFetch` stepping through an undecodable batch, which seeks
        itself) may then return records from before and after that seek, so a
        commit would store some of them twice. A fetch that overlapped a
        rebalance, or whose records do not follow what was already decided, is
        therefore dropped and every partition sought to its tracked position again.
        """
        if self._unpositioned:  # assigned since the last round, or storage was down
            async with self._busy:
                await self._settle()  # so that the positions read next include it
                await self._seek_tracked()
        generation = self._generation
        batches = await self._fetch(fetch)
        async with self._busy:
            if self._unpositioned or generation != self._generation \
                    or not self._follows(batches):
                self._unpositioned |= consumer.assignment()
                await self._settle()  # so that the positions read next include it
                await self._seek_tracked()
                batches = {}  # fetched before the seek: read again from the position
            await self._step(consumer, batches)
        await self._commit_for_lag(consumer)

    async def _recover(self, exc: Exception, stop: asyncio.Event, backoff: Backoff) -> None:
        """After a failed read or transaction: forget, then resume from storage's positions.

        What was decided but not committed is dropped with the caches (as after
        a conflict); every assigned partition is sought back to the position
        stored with the last committed transaction, once PostgreSQL answers.
        """
        self.health.set_degraded(SERVICE, describe_error(exc))
        if isinstance(exc, ConcurrencyConflict):  # another copy, or storage lost a commit
            log.info("batch conflicted; resuming from the tracked positions",
                     extra={"error": describe_error(exc)})
        else:
            log.warning("store failed; resuming from the tracked positions once it is back",
                        extra={"error": describe_error(exc)})
        async with self._busy:
            pending, self._pending = self._pending, None
            if pending is not None and pending.commit is not None:
                await asyncio.gather(pending.commit, return_exceptions=True)
            self.uow.forget()
            consumer = self._consumer
            if consumer is not None:
                self._unpositioned |= consumer.assignment()
        await backoff.sleep(stop)

    def _reset(self) -> None:
        """Nothing decided, nothing pending, no position known (a fresh start)."""
        self.uow.forget()
        self._pending = None
        self._done = {}
        self._unpositioned = set()
        self._after = {}
        self._limit = min(self.batch_records, FIRST_BATCH_RECORDS)

    async def _fetch(self, fetch: SafeFetch) -> Batches:
        """One fetch, topped up with what is already buffered, up to the limit.

        Under a backlog each batch (one transaction) grows to several fetches'
        worth; when records trickle in, nothing waits for more. While a commit is
        in flight, the wait for new records is short so that it is settled soon.
        The limit starts at :data:`FIRST_BATCH_RECORDS` when the consumer starts and
        doubles with each batch up to ``batch_records``: the first events are stored
        soon, and a backlog is then taken in large transactions.
        """
        timeout = 5 if self._pending is not None else self.tuning.poll_timeout_ms
        batches: Batches = await fetch.getmany(timeout_ms=timeout,
                                               max_records=self.tuning.max_poll_records)
        total = sum(len(records) for records in batches.values())
        limit = self._limit
        while batches and total < limit:
            more = await fetch.getmany(timeout_ms=0, max_records=self.tuning.max_poll_records)
            if not more:
                break
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
                total += len(records)
        if batches:
            self._limit = min(limit * 2, self.batch_records)
        return batches
