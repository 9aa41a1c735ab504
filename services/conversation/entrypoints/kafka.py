"""The conversation service: command topic -> event store, exactly once.

A thin Kafka driver of the :class:`BatchUnitOfWork`: each fetch is decided and committed in ONE
database transaction together with its outcomes, dead letters and the consumed
position of every partition it covers (``{topic}:{partition}`` -> last offset).
That tracked position, not Kafka's committed offset, is where a partition
resumes: on assignment the consumer seeks to it. Kafka offsets are committed
afterwards, at most once a second, for lag tooling only.

Throughput and latency come from doing less per record and overlapping the rest:

- one transaction per fetch, not per partition (a store that
  :class:`~services.conversation.application.ports.RecordsManyPositions` -- PostgreSQL --
  gets them all; other stores get one transaction per partition);
- under a backlog a fetch is topped up with what the consumer has buffered, up
  to ``BONYCHAT_KAFKA_BATCH_RECORDS`` records;
- the next fetch is decoded and decided while the previous one's transaction
  runs in PostgreSQL (see :meth:`ConversationService._step`).

A failed transaction is not retried here: the unit of work forgets what was
decided, and every partition resumes from the position storage recorded
(:meth:`ConversationService._recover`), which re-reads the lost records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.command_codec import read_command
from schemas.commands import CommandBase
from services.conversation.application.ports import (
    ConcurrencyConflict,
    EventStore,
    Position,
    Positions,
    RecordsManyPositions,
)
from services.conversation.application.processor import BatchResult, Decision
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import Invalid, describe
from services.runtime.fetch import SafeFetch, UndecodableRecord
from services.runtime.kafka import (
    FetchHold,
    make_consumer,
    partitions_text,
    record_lag,
    subscribe,
)
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import Backoff, bounded, is_transient
from services.runtime.retry import describe as describe_error
from services.runtime.topics import KafkaTuning, Topics, group_id

log = logging.getLogger(__name__)
SERVICE = "conversation"
DEAD_LETTER_SOURCE = "commands"
LAG_COMMIT_SECONDS = 1.0


def decode(record: ConsumerRecord[bytes, bytes]) -> CommandBase | Invalid:
    """A command record's body, or an invalid item (dead letter) if it does not decode."""
    if isinstance(record, UndecodableRecord):
        return Invalid("", record.reason)
    raw = record.value if record.value is not None else b""
    try:
        body = read_command(raw)
    except ValidationError as exc:
        text = raw.decode("utf-8", errors="replace")
        return Invalid(text, f"undecodable command at {record.topic}:{record.partition}@"
                             f"{record.offset}: {describe(exc)}")
    return body


def position_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


Records = list[ConsumerRecord[bytes, bytes]]
Batches = dict[TopicPartition, Records]
Group = list[tuple[TopicPartition, Records]]


@dataclass(slots=True)
class _Decided:
    """A decided group of partition batches, to be committed in one transaction."""

    group: Group
    decision: Decision
    position: Position
    started: float
    commit: asyncio.Future[BatchResult] | None = field(default=None)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ConversationService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.assigned(assigned)


class ConversationService:
    """Consumes commands and stores their outcome with the consumed position."""

    def __init__(self, *, bootstrap: str, topics: Topics, group_prefix: str,
                 tuning: KafkaTuning, events: EventStore, metrics: RuntimeMetrics,
                 health: Health, cache_size: int = 200_000,
                 batch_records: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.group = group_id(group_prefix, SERVICE)
        self.tuning = tuning
        #: its consumer's: fetches answered at once by default (ingest batches by time)
        self.fetch_tuning = tuning.for_commands()
        self.events = events
        self.uow = BatchUnitOfWork(events, cache_size=cache_size)
        #: records to gather per fetch (several fetches under a backlog)
        self.batch_records = batch_records or tuning.batch_records
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
        async with self._busy:
            self._generation += 1
            try:
                await self._settle()
            except Exception as exc:  # lost with the commit: resumed from storage below
                self._pending = None
                log.warning("commit in flight failed during a rebalance: %s", describe_error(exc))
            self.uow.forget()  # another copy may have changed these aggregates
            self._unpositioned |= assigned
            try:
                await self._seek_tracked()
            except Exception as exc:  # never consume from an unknown position
                if not is_transient(exc):
                    raise
                log.warning("cannot read the tracked positions yet: %s", describe_error(exc))
                return

    async def _seek_tracked(self) -> None:
        """Seek every partition whose position is not known to its tracked position + 1.

        Until this succeeds, records of those partitions are not processed
        (:meth:`_step` skips them), whatever the consumer fetched meanwhile.
        """
        consumer = self._consumer
        assert consumer is not None
        todo = self._unpositioned & consumer.assignment()
        resume = {}
        for tp in sorted(todo):
            tracked = await asyncio.to_thread(self.events.position, position_name(tp))
            resume[tp.partition] = tracked
            self._after[tp] = -1 if tracked is None else tracked
            # Offset 0 before the log start is reset to the earliest record.
            consumer.seek(tp, 0 if tracked is None else tracked + 1)
        self._unpositioned = set()
        if todo:
            log.info("partitions assigned", extra={
                "topic": self.topics.commands, "partitions": partitions_text(todo),
                "resume_after": {str(k): v for k, v in sorted(resume.items())}})
        self.health.set_ready(SERVICE)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; survives PostgreSQL outages in place (:meth:`_recover`).

        A failure that :meth:`_recover` cannot handle (Kafka itself) ends this
        call; :func:`.retry.retrying` runs it again with a fresh consumer.
        """
        consumer = make_consumer(self.bootstrap, self.fetch_tuning, topic=self.topics.commands,
                                 group=self.group, service=SERVICE)
        self._consumer = consumer
        fetch = SafeFetch(consumer, service=SERVICE, metrics=self.metrics,
                          hold=FetchHold(consumer, self.fetch_tuning))
        self._reset()
        subscribe(consumer, self.topics.commands, _Rebalance(self))
        await consumer.start()
        log.info("conversation service started",
                 extra={"topic": self.topics.commands, "group": self.group})
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

        aiokafka runs the rebalance listener while a fetch waits, and ``assigned``
        seeks every partition to its tracked position; a fetch in flight (above
        all :class:`SafeFetch` stepping through an undecodable batch, which seeks
        itself) may then return records from before and after that seek, so a
        commit would store some of them twice. A fetch that overlapped a
        rebalance, or whose records do not follow what was already decided, is
        therefore dropped and every partition sought to its tracked position again.
        """
        generation = self._generation
        batches = await self._fetch(fetch)
        async with self._busy:
            if self._unpositioned or generation != self._generation \
                    or not self._follows(batches):
                self._unpositioned |= consumer.assignment()
                await self._seek_tracked()
                batches = {}  # fetched before the seek: read again from the position
            await self._step(consumer, batches)
        await self._commit_for_lag(consumer)

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

    async def _fetch(self, fetch: SafeFetch) -> Batches:
        """One fetch, topped up with what is already buffered, up to ``batch_records``.

        Under a backlog each batch (one transaction) grows to several fetches'
        worth; when records trickle in, nothing waits for more. While a commit is
        in flight, the wait for new records is short so that it is settled soon.
        """
        timeout = 5 if self._pending is not None else self.tuning.poll_timeout_ms
        batches: Batches = await fetch.getmany(timeout_ms=timeout,
                                               max_records=self.tuning.max_poll_records)
        total = sum(len(records) for records in batches.values())
        while batches and total < self.batch_records:
            more = await fetch.getmany(timeout_ms=0, max_records=self.tuning.max_poll_records)
            if not more:
                break
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
                total += len(records)
        return batches

    async def _step(self, consumer: AIOKafkaConsumer, batches: Batches) -> None:
        """Decide this fetch while the previous one commits; then start its commit.

        Deciding fetch N+1 (decode, dedupe against storage and N's keys in
        flight, apply to the cached aggregates) overlaps PostgreSQL's work on
        fetch N's transaction; N+1 is committed only after N, so commits stay in
        order, and N+1's positions say they continue from N's. If N's commit
        fails, N+1 is dropped with the caches and everything resumes from
        storage's positions (:meth:`_recover`).
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
            await self._settle()  # raises if N failed: N+1 is dropped
            decided.commit = asyncio.ensure_future(
                asyncio.to_thread(self.uow.write, decided.decision, decided.position))
            self._pending = decided

    def _position(self, tp: TopicPartition, records: Records) -> Position:
        """Where this batch of ``tp`` ends, and where storage must have it continue from."""
        return Position(position_name(tp), records[-1].offset, self._after.get(tp))

    def _decide_ahead(self, group: Group) -> _Decided:
        """Decode and decide a group (worker thread)."""
        started = time.perf_counter()
        items = [decode(r) for _, records in group for r in records]
        positions = [self._position(tp, records) for tp, records in group]
        position = positions[0] if len(positions) == 1 else Positions(
            positions[0].name, positions[0].offset, positions[0].after,
            others=tuple(positions[1:]))
        decision = self.uow.decide(items, DEAD_LETTER_SOURCE)
        return _Decided(group, decision, position, started)

    async def _settle(self) -> None:
        """Wait for the commit in flight; if it failed, forget and raise (see :meth:`_recover`).

        Whatever was decided on top of a failed commit is stale, and so may be
        any position this process believes stored (a conflict: another copy
        moved it; a lost connection: the commit may or may not have happened),
        so the caller resumes from storage's positions instead of retrying here.
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
        assignment = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assignment}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            log.debug("lag-only offset commit skipped: %s", exc)
