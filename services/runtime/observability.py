"""Prometheus metrics, health and JSON logs of one ``bonychat serve`` process.

One :class:`~prometheus_client.CollectorRegistry` per process; the HTTP app
exposes it on ``GET /metrics`` and calls :class:`Health` for ``GET /healthz``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.commands import CommandBase, ExpireInactive
from services.conversation.application.ports import Outcome
from services.conversation.application.processor import BatchResult
from services.ingest.domain.normalise import Invalid
from services.projections.domain.rows import ConversationRow

#: an outcome's event type and outcome (an :class:`Outcome` is a tuple)
_EVENT_TYPE = itemgetter(Outcome._fields.index("event_type"))
_OUTCOME = itemgetter(Outcome._fields.index("outcome"))
M = TypeVar("M", Counter, Histogram)
_BATCH_SIZES = (1, 10, 50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
_RESOLUTION_SECONDS = (60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400,
                       7 * 86400)
_BATCH_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_GC_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _child(children: dict[str, M], metric: M, label: str) -> M:
    """``metric.labels(label)``, looked up once and kept in ``children``."""
    child = children.get(label)
    if child is None:
        child = children[label] = metric.labels(label)
    return child


def _observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for each value, one ``inc`` per bucket and one for the sum.

    Reads the child's buckets as ``observe`` does (prometheus_client 0.26: the first
    upper bound not below the value); without them, observes one value at a time.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    for index, n in Tally([bisect_left(bounds, value) for value in values]).items():
        buckets[index].inc(n)
    total.inc(sum(values))


#: the valid items' gateway event types, and how many items were invalid
IngestTally = tuple[Tally[str], int]


def tally_ingest(items: Sequence[CommandBase | Invalid]) -> IngestTally:
    """What :meth:`RuntimeMetrics.count_ingest` counts of ``items``.

    Counted in C, invalid items included: ``getattr`` with a default (``map`` of the
    builtin) gives an invalid item's ``event_type`` as ``None`` (an :class:`Invalid`
    has none; a command's is text), and ``None``'s count is how many were invalid.
    A large batch of gateway records nearly always holds one invalid record, which
    sent the attribute map the long way (a Python comprehension, ~0.3 µs an item)."""
    kinds: Tally[str | None] = Tally(map(getattr, items, repeat("event_type"), repeat(None)))
    invalid = kinds.pop(None, 0)
    return cast("Tally[str]", kinds), invalid  # None popped: text keys only


class RuntimeMetrics:
    """The runtime's instruments, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("bonychat_events", "Gateway events handled, by outcome",
                              ["service", "type", "outcome"], registry=r)
        self.dead_letters = Counter("bonychat_dead_letters", "Inputs sent to the dead-letter "
                                    "store", ["service", "source"], registry=r)
        self.domain_events = Counter("bonychat_domain_events", "Domain events written or "
                                     "published", ["service"], registry=r)
        self.inactivity_closings = Counter(
            "bonychat_inactivity_closings", "Conversations closed after inactivity (CONTRACT "
            "6.4), by what noticed it: the contact's next event or a sweep", ["trigger"],
            registry=r)
        self.sweeps = Counter("bonychat_inactivity_sweeps", "Inactivity sweeps run, and the "
                              "contacts they asked to decide", ["what"], registry=r)
        self.batch_size = Histogram("bonychat_batch_size", "Records per processed batch",
                                    ["service"], buckets=_BATCH_SIZES, registry=r)
        self.batch_seconds = Histogram("bonychat_batch_seconds", "Time to process a batch",
                                       ["service"], buckets=_BATCH_SECONDS, registry=r)
        self.consumer_lag = Gauge("bonychat_consumer_lag", "Records behind the partition's "
                                  "high watermark", ["service", "topic", "partition"],
                                  registry=r)
        self.undecodable = Counter("bonychat_undecodable_records", "Kafka records that could "
                                   "not be decoded (dead-lettered, then skipped)",
                                   ["service", "topic"], registry=r)
        self.projection_lag = Gauge("bonychat_projection_lag", "Stored events not yet in "
                                    "the follower's position", ["follower"], registry=r)
        self.resolution = Histogram("bonychat_conversation_resolution_seconds",
                                    "Opening to closing of conversations projected as closed "
                                    "(merges not counted)", ["channel"],
                                    buckets=_RESOLUTION_SECONDS, registry=r)
        self.closed = Counter("bonychat_conversations_closed", "Conversations projected as "
                              "closed, by who closed them", ["closed_by"], registry=r)
        self.gc_pause = Histogram("bonychat_gc_pause_seconds", "Pauses of Python's cyclic "
                                  "garbage collector in this process, by generation",
                                  ["generation"], buckets=_GC_SECONDS, registry=r)
        self.gc_cpu = Counter("bonychat_gc_cpu_seconds", "CPU time of the thread that ran "
                              "each collection, during it (a pause longer than this waited "
                              "for a core)", ["generation"], registry=r)
        self._closed_by: dict[str, Counter] = {}  # label -> child (count_closed_rows)
        self._resolution_by: dict[str, Histogram] = {}

    def count_closed_rows(self, rows: Sequence[ConversationRow]) -> None:
        """Conversations the projections service closed (a resolution unless a merge),
        a page's closed rows at once.

        Counted per label, not per row: one ``inc`` per label and one per histogram
        bucket (an ``inc`` or ``observe`` takes a lock each time: ~1 and ~1.5 µs a
        row, ~3 µs in all, a twentieth of the projections' CPU under a backlog).
        """
        by: Tally[str] = Tally([row.closed_by or "unknown" for row in rows])
        for closed_by, n in by.items():
            _child(self._closed_by, self.closed, closed_by).inc(n)
        resolved: dict[str, list[float]] = {}
        for row in rows:
            seconds = row.resolution_seconds
            if row.closed_by != "merge" and seconds is not None:
                resolved.setdefault(row.channel or "none", []).append(seconds)
        for channel, values in resolved.items():
            _observe_all(_child(self._resolution_by, self.resolution, channel), values)

    def count_ingest(self, items: Sequence[CommandBase | Invalid], source: str,
                     service: str = "ingest") -> None:
        """What the ingest service (or the HTTP Kafka sink, ``service="http"``) forwarded."""
        self.count_ingest_tally(tally_ingest(items), source, service)

    def count_ingest_tally(self, tally: IngestTally, source: str,
                           service: str = "ingest") -> None:
        """:meth:`count_ingest` of items already tallied (:func:`tally_ingest`): the
        conversation service tallies its gateway items in the worker thread that
        parsed them, while they are in the CPU's cache (on the event loop, when the
        batch settles, the same tally cost ~0.7 µs an item)."""
        kinds, invalid = tally
        for kind, n in kinds.items():
            self.events.labels(service, kind, "forwarded").inc(n)
        if invalid:
            self.events.labels(service, "unknown", "invalid").inc(invalid)
            self.dead_letters.labels(service, source).inc(invalid)

    def count_batch(self, items: Sequence[CommandBase | Invalid], result: BatchResult,
                    source: str) -> None:
        """Outcomes of one conversation batch, by gateway event type (counted in C:
        this runs on the event loop for every batch)."""
        outcomes = result.outcomes
        decided: Tally[tuple[str, str]] = Tally(zip(map(_EVENT_TYPE, outcomes),
                                                    map(_OUTCOME, outcomes), strict=True))
        for (kind, outcome), n in decided.items():
            self.events.labels("conversation", kind, outcome).inc(n)
        for kind, n in result.duplicate_types.items():
            self.events.labels("conversation", kind, "duplicate").inc(n)
        if result.invalid:
            self.events.labels("conversation", "unknown", "invalid").inc(result.invalid)
            self.dead_letters.labels("conversation", source).inc(result.invalid)
        self.domain_events.labels("conversation").inc(len(result.events))
        if result.expired:
            trigger = "sweep" if source == "sweep" or any(
                isinstance(i, ExpireInactive) for i in items) else "next_event"
            self.inactivity_closings.labels(trigger).inc(result.expired)


class Health:
    """Readiness and liveness from named components; callable for ``/healthz``.

    Ready = live, every component ready and every watched dependency (Kafka,
    PostgreSQL: :mod:`.dependencies`) reachable. A component that is retrying
    after a dependency failure (:func:`.retry.retrying`) is not ready and says why.
    """

    def __init__(self) -> None:
        self._ready: dict[str, bool] = {}
        self._failed: dict[str, str] = {}
        self._degraded: dict[str, str] = {}
        self._dependencies: dict[str, bool] = {}
        self._down: dict[str, str] = {}
        self.started = time.time()

    def expect(self, component: str) -> None:
        """Register a component that must report ready before the process is."""
        self._ready.setdefault(component, False)

    def set_ready(self, component: str, ready: bool = True) -> None:
        self._ready[component] = ready
        if ready:
            self._degraded.pop(component, None)

    def set_degraded(self, component: str, reason: str) -> None:
        """Not ready while it waits to retry after a dependency failure."""
        self._ready[component] = False
        self._degraded[component] = reason

    def set_failed(self, component: str, detail: str) -> None:
        self._failed[component] = detail
        self._ready[component] = False

    def set_dependency(self, name: str, up: bool, detail: str | None = None) -> None:
        """A watched dependency is reachable (or not, and why)."""
        self._dependencies[name] = up
        if up:
            self._down.pop(name, None)
        else:
            self._down[name] = detail or "unreachable"

    def dependency_up(self, name: str) -> bool:
        """False only while a watch has found ``name`` unreachable."""
        return self._dependencies.get(name, True)

    def ready(self) -> bool:
        return self.live() and all(self._ready.values()) and all(self._dependencies.values())

    def live(self) -> bool:
        return not self._failed

    def __call__(self) -> dict[str, Any]:
        info: dict[str, Any] = {"ready": self.ready(), "live": self.live(),
                                "components": dict(sorted(self._ready.items()))}
        if self._dependencies:
            info["dependencies"] = dict(sorted(self._dependencies.items()))
        if self._down:
            info["down"] = dict(self._down)
        if self._degraded:
            info["retrying"] = dict(self._degraded)
        if self._failed:
            info["failed"] = dict(self._failed)
        return info


_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    """JSON lines on stderr; aiokafka's own chatter only from WARNING up unless DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet = "DEBUG" if level == "DEBUG" else "WARNING"
    for name in ("aiokafka", "kafka", "aiohttp.access"):
        logging.getLogger(name).setLevel(quiet)
