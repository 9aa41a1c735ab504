"""Publish-to-visible latency at a fixed offered rate, services running and caught up.

Method. Each gateway event gets a fresh ``lat-…`` event id. The publisher sends
on a fixed schedule (``rate`` per second, in small bursts every few ms) and notes
for each event the moment it handed it to the producer. A poller, every
``interval`` seconds (10 ms), reads in one statement (1) the projection's tracked
position P (``projection:conversations``, committed in the same transaction as
the rows) and (2) the rows of the event store's notification log up to P that it
has not seen yet, only their ``source_event_id`` (cut out of the stored JSON by
PostgreSQL); every domain event carries ``source_event_id``, so each gateway
event maps to the highest notification id N of the domain events it produced.
The event is visible in the read model at the first poll whose P >= N; latency =
that poll's time - publish time (an upper bound, by at most one poll interval
plus a query). Gateway events
that produce no domain event (rejections, duplicates, a ``message.sent`` with no
open conversation, invalid lines) change nothing in the read model and are
counted, not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql

from . import limits
from .dbwatch import DatabaseWatch
from .e2e import Progress, World, wait_for
from .gcstats import OwnPauses, frozen_heap, gc_counters, gc_pauses
from .procs import CpuSampler

Timed = tuple[bytes | None, bytes, str | None]  # key, value, event id
BURST = 0.005  # the publisher's shortest pause (the producer's linger_ms is 5 ms too)


def latency_records(lines: Sequence[bytes], prefix: bytes = b"lat-") -> list[Timed]:
    """Gateway records with ``prefix`` event ids (unique against the e2e input)."""
    out: list[Timed] = []
    renamed = b'"event_id":"' + prefix
    for key, value in limits.keyed([line.replace(b'"event_id":"evt-', renamed)
                                    for line in lines]):
        try:
            event_id = orjson.loads(value).get("event_id")
        except (orjson.JSONDecodeError, AttributeError):
            event_id = None
        out.append((key, value, event_id if isinstance(event_id, str) else None))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


_SOURCE = b'"source_event_id":"'


def source_event_id(state: bytes) -> str | None:
    """The ``source_event_id`` of a stored event's JSON (a substring scan: cheap)."""
    start = state.find(_SOURCE)
    if start < 0:
        return None
    start += len(_SOURCE)
    return state[start:state.index(b'"', start)].decode()


#: the stored JSON from just after ``"source_event_id":"`` (its value and what follows),
#: cut out by PostgreSQL so that the poller reads 200 bytes per event, not the whole state
_NEEDLE = f"'\\x{_SOURCE.hex()}'::bytea"
_TAIL = (f"CASE WHEN position({_NEEDLE} IN e.state) > 0 THEN substring(e.state FROM "
         f"position({_NEEDLE} IN e.state) + {len(_SOURCE)} FOR 200) END")


def source_of_tail(tail: bytes | None) -> str | None:
    """The event id at the start of a ``_TAIL`` (up to its closing quote)."""
    if tail is None:
        return None
    end = tail.find(b'"')
    return tail[:end].decode(errors="replace") if end >= 0 else None


class Poller:
    """Follows the projection position and the notification log (see module docstring).

    Each poll is ONE statement: the projection's tracked position P and, when P
    has moved, the ``source_event_id`` of each stored event up to P (not the
    whole stored JSON, and never events the projection has not reached): an
    event whose domain events straddle two polls is stamped by the later one,
    so each gateway event gets the first poll whose P covers all of its domain
    events, as before, for about one index lookup per poll while nothing moves.
    """

    PAGE = 50_000

    def __init__(self, world: World, published: dict[str, float], interval: float) -> None:
        self.world = world
        self.published = published
        self.interval = interval
        self.visible: dict[str, float] = {}
        self.after = 0
        self.polls = 0
        self.stop = asyncio.Event()

    def statement(self) -> sql.Composed:
        schema = sql.Identifier(self.world.schema)
        return sql.SQL(
            "SELECT p.notification_id, e.notification_id, {tail} "
            "FROM {s}.projection_tracking p LEFT JOIN {s}.stored_events e "
            "ON e.notification_id > %s AND e.notification_id <= p.notification_id "
            "WHERE p.application_name = %s ORDER BY e.notification_id LIMIT {page}"
        ).format(tail=sql.SQL(_TAIL), s=schema, page=sql.Literal(self.PAGE))

    def take(self, rows: Sequence[tuple[Any, Any, Any]], now: float) -> bool:
        """Stamp the events of one poll's rows; whether a page was full (read on)."""
        for _, nid, tail in rows:
            if nid is None:  # the position has not moved: no events joined
                continue
            source = source_of_tail(None if tail is None else bytes(tail))
            if source in self.published:
                self.visible[source] = now  # the last stamp is the event's highest id
            self.after = int(nid)
        return len(rows) >= self.PAGE

    async def run(self, conn: psycopg.AsyncConnection[Any], after: int) -> None:
        # rendered once and prepared: ~100 polls a second share one parse and plan
        statement = self.statement().as_bytes(conn)
        self.after = after
        while True:
            last_round = self.stop.is_set()
            now = None
            full = True
            while full:  # more than a page became visible at this poll: read it all now
                cursor = await conn.execute(statement, (self.after, "projection:conversations"),
                                            prepare=True)
                now = time.perf_counter() if now is None else now
                full = self.take(await cursor.fetchall(), now)
            self.polls += 1
            if last_round:
                return
            await asyncio.sleep(self.interval)


async def _publish_at_rate(world: World, records: Sequence[Timed], rate: float,
                           published: dict[str, float], acked: list[float]) -> float:
    """Publish ``records`` at ``rate`` per second, in bursts at most every ``BURST``
    seconds, each record by ``producer.send`` into aiokafka's open batches (a 5 ms
    linger, as a gateway's librdkafka sends by default); note when each event was
    handed over (``published``) and how long its acknowledgement took (``acked``).

    Not :class:`RecordBatches` (closed batches, one future per batch), although that
    costs this harness ~0.04 cores less at 5,000/s: each burst then left at once, and
    the broker, counted in the pipeline's cores, used ~0.04 cores more at 1,000/s for
    ~10 % more produce requests (docs/runtime.md, "The harness's own cost")."""
    producer = limits.make_producer(world.bootstrap)
    await producer.start()
    failures: list[BaseException] = []

    def done(future: asyncio.Future[Any], at: float) -> None:
        acked.append(time.perf_counter() - at)
        if not future.cancelled() and future.exception() is not None:
            failures.append(future.exception())  # type: ignore[arg-type]

    try:
        futures = []
        started = time.perf_counter()
        sent = 0
        while sent < len(records):
            due = min(len(records), int((time.perf_counter() - started) * rate) + 1)
            while sent < due:
                key, value, event_id = records[sent]
                at = time.perf_counter()
                if event_id is not None:
                    published.setdefault(event_id, at)
                future = await producer.send(world.topics.gateway, value, key=key)
                future.add_done_callback(functools.partial(done, at=at))
                futures.append(future)
                sent += 1
            # bursts at most every BURST seconds: not one timer wake-up per event
            await asyncio.sleep(max(BURST, started + sent / rate - time.perf_counter()))
        elapsed = time.perf_counter() - started
        # Not asyncio.gather(*futures): over the 150,000 futures of a 30 s phase at
        # 5,000/s it held this event loop (and the poller in it, which stamps events
        # visible) for ~0.9 s, so the phase's last events looked ~1 s late
        # (docs/runtime.md, "Latency right after a backlog").
        await producer.flush()
        for future in [f for f in futures if not f.done()]:  # none, after a flush
            await future
        if failures:
            raise failures[0]
        return elapsed
    finally:
        await producer.stop()


def _seconds(published: dict[str, float], visible: dict[str, float]
             ) -> dict[int, list[float]]:
    """Latencies (ms) of the events published in each second of the run."""
    start = min(published.values(), default=0.0)
    seconds: dict[int, list[float]] = {}
    for event, seen in visible.items():
        at = published[event]
        seconds.setdefault(int(at - start), []).append((seen - at) * 1000)
    return seconds


def by_second(published: dict[str, float], visible: dict[str, float]) -> list[float]:
    """Median latency (ms) of the events published in each second of the run."""
    seconds = _seconds(published, visible)
    return [round(percentile(seconds[s], 0.5)) for s in sorted(seconds)]


def by_second_detail(published: dict[str, float], visible: dict[str, float]
                     ) -> list[dict[str, Any]]:
    """Per second of publishing: events timed, p50, p99 and max latency (ms)."""
    seconds = _seconds(published, visible)
    return [{"second": s, "events": len(seconds[s]),
             "p50_ms": round(percentile(seconds[s], 0.5)),
             "p99_ms": round(percentile(seconds[s], 0.99)), "max_ms": round(max(seconds[s]))}
            for s in sorted(seconds)]


async def measure_latency(world: World, records: Sequence[Timed], rate: float, *,
                          interval: float = 0.01, settle: float = 120,
                          database_watch: bool = False) -> dict[str, Any]:
    """Offer ``records`` at ``rate``/s to the running services; latency percentiles (ms).

    ``database_watch``: also latency by second next to what PostgreSQL did in that
    second (``bench.dbwatch``: autovacuum, lock waits, checkpoints, WAL, the server log)
    and each service's collector pauses in the phase (``gc``, ``bench.gcstats``).

    The harness's heap is frozen and its full collections deferred for the phase
    (``gcstats.frozen_heap``): they walked a run's inputs, 180-280 ms each, five in a
    5,000/s phase, and the poller stamped nothing while they ran (``harness_gc`` says
    what is left)."""
    with frozen_heap():
        return await _measured(world, records, rate, interval=interval, settle=settle,
                               database_watch=database_watch)


async def _measured(world: World, records: Sequence[Timed], rate: float, *,
                    interval: float, settle: float, database_watch: bool) -> dict[str, Any]:
    """:func:`measure_latency` with the harness's heap frozen."""
    published: dict[str, float] = {}
    acked: list[float] = []
    poller = Poller(world, published, interval)
    pids = {p.name: p.pid for p in world.processes}
    watch = DatabaseWatch(world.database_url, world.schema)
    collected = gc_counters(world) if database_watch else {}
    async with Progress(world) as progress, await psycopg.AsyncConnection.connect(
            world.database_url, autocommit=True) as conn:
        polling = asyncio.create_task(poller.run(conn, await progress.max_notification_id()))
        with CpuSampler(pids) as cpu, OwnPauses() as own_gc, (
                watch if database_watch else contextlib.nullcontext()):
            seconds = await _publish_at_rate(world, records, rate, published, acked)
            await wait_for(world, progress.all_done, settle + len(records) / 1_000, 0.1,
                           "latency events")
        poller.stop.set()
        await asyncio.wait_for(polling, 30)
    latencies = [(poller.visible[e] - published[e]) * 1000 for e in poller.visible]
    extra: dict[str, Any] = {}
    if database_watch:
        detail = by_second_detail(published, poller.visible)
        start = min(published.values(), default=0.0) + time.time() - time.perf_counter()
        for row, db in zip(detail, watch.by_second(start, len(detail)), strict=True):
            row["database"] = db
        harness_ms = own_gc.ms_by_second(min(published.values(), default=0.0),
                                         1 + max((row["second"] for row in detail), default=0))
        for row in detail:
            row["harness_gc_ms"] = harness_ms[row["second"]]
        extra = {"by_second": detail, "database_log": watch.log(),
                 "database_watch_error": watch.error,
                 "gc": gc_pauses(collected, gc_counters(world))}
    return {**extra,
        "harness_gc": own_gc.summary(),  # the harness's own pauses (gcstats.OwnPauses)
        "offered_rate_per_s": rate, "published": len(records),
        "achieved_rate_per_s": round(len(records) / seconds),
        "publish_seconds": round(seconds, 2),
        "measured_events": len(latencies),
        "events_without_domain_event": len(published) - len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p90_ms": round(percentile(latencies, 0.90), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=float("nan")), 1),
        "kafka_ack_p50_ms": round(percentile(acked, 0.50) * 1000, 1),
        "kafka_ack_p99_ms": round(percentile(acked, 0.99) * 1000, 1),
        "p50_ms_by_second": by_second(published, poller.visible),
        "p99_ms_by_second": [row["p99_ms"] for row in by_second_detail(published,
                                                                        poller.visible)],
        "poll_interval_s": interval, "cpu_cores": cpu.summary(),
        "cpu_us_per_event": cpu.us_per_event(len(records)),  # per event offered
        "postgres_us_per_event_by_client": {
            k: round(v * 1e6 / max(len(records), 1), 1)
            for k, v in cpu.postgres_by_client().items()},
    }
