"""The supervisor of ``bonychat serve`` worker processes: plan, restarts, stop, metrics."""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.merged_metrics import merge
from services.runtime.observability import Health
from services.runtime.workers import (
    RestartPolicy,
    Supervisor,
    Worker,
    WorkerFailed,
    not_ready_reason,
    plan_workers,
)
from services.settings import Settings

ALL = ["ingest", "conversation", "relay", "projections"]
T = TypeVar("T")


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> Callable[[], T]:
    """An ``async def`` test, run on its own event loop."""
    return functools.wraps(test)(lambda: asyncio.run(test()))


def kafka(**overrides: object) -> Settings:
    return Settings(kafka_bootstrap="127.0.0.1:9092", **overrides)  # type: ignore[arg-type]


# --- which processes ---------------------------------------------------------------------

def test_default_services_one_worker_each_with_the_relay_inside_conversation() -> None:
    assert plan_workers(["ingest", "conversation", "projections"], kafka(), 2) == [
        "ingest", "conversation", "projections"]
    assert plan_workers(ALL, kafka(), 4) == ["ingest", "conversation,relay", "projections"]


def test_relay_gets_its_own_worker_when_it_does_not_run_with_conversation() -> None:
    assert plan_workers(ALL, kafka(relay_with_conversation=False), 2) == [
        "ingest", "conversation", "relay", "projections"]


@pytest.mark.parametrize(("names", "settings", "cpus"), [
    (["ingest", "conversation", "projections"], kafka(), 1),  # one CPU
    (["ingest", "conversation", "projections"], kafka(serve_processes="1"), 8),  # asked for
    (["ingest", "conversation", "projections"], Settings(kafka_bootstrap=None), 8),  # embedded
    (["conversation"], kafka(), 8),  # one service: already one process
    (["conversation", "relay"], kafka(), 8),  # the relay runs inside conversation
    (["http"], kafka(), 8),
])
def test_one_process_when_workers_would_not_help(names: list[str], settings: Settings,
                                                 cpus: int) -> None:
    assert plan_workers(names, settings, cpus) == []


def test_serve_processes_setting_is_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONYCHAT_SERVE_PROCESSES", "1")
    assert Settings().serve_processes == "1"
    monkeypatch.setenv("BONYCHAT_SERVE_PROCESSES", "4")
    with pytest.raises(ValueError, match="serve_processes"):
        Settings()


# --- restarts ----------------------------------------------------------------------------

def test_backoff_doubles_then_gives_up_after_quick_failures() -> None:
    policy = RestartPolicy(first_delay=1, max_delay=5, healthy_seconds=60, quick_failures=4)
    assert [policy.after_exit(1) for _ in range(5)] == [1, 2, 4, 5, None]


def test_a_long_run_starts_the_backoff_again() -> None:
    policy = RestartPolicy(first_delay=1, max_delay=30, healthy_seconds=60, quick_failures=2)
    assert policy.after_exit(5) == 1
    assert policy.after_exit(5) == 2
    assert policy.after_exit(61) == 1  # it ran long enough: not a crash loop
    assert policy.after_exit(5) == 2
    assert policy.after_exit(5) is None


class FakeProcess:
    """Exits with the next status when ``finish`` is called, or on SIGTERM with 0."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.signals: list[int] = []
        self._exited = asyncio.Event()

    def finish(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self.finish(0)

    def kill(self) -> None:
        self.finish(-9)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class Starter:
    """Starts fake processes; each exits at once with the next of ``codes`` (then runs)."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.started: list[FakeProcess] = []

    def __call__(self, worker: Worker) -> None:
        process = FakeProcess(100 + len(self.started))
        self.started.append(process)
        worker.process = process  # type: ignore[assignment]
        worker.port = 9000 + len(self.started)
        if self.codes:
            process.finish(self.codes.pop(0))


def supervisor(starter: Starter, groups: list[str], health: Health,
               policy: RestartPolicy) -> Supervisor:
    sup = Supervisor(groups, health, probe_seconds=3600, starter=starter, clock=lambda: 0.0)
    for worker in sup.workers:
        worker.policy = policy
    return sup


@run
async def test_a_worker_that_exits_is_started_again_and_health_says_why() -> None:
    health = Health()
    starter = Starter([1])
    sup = supervisor(starter, ["ingest"], health,
                     RestartPolicy(first_delay=0.01, max_delay=0.01))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.keep(sup.workers[0], stop))
    for _ in range(100):
        if len(starter.started) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(starter.started) == 2  # the first exited (status 1), a second runs
    assert sup.ports() == [9002]
    assert "exited with status 1" in health()["retrying"]["worker:ingest"]
    stop.set()
    await task
    await sup.stop_all()
    assert starter.started[1].signals == [signal.SIGTERM]


@run
async def test_a_worker_that_keeps_failing_stops_serve() -> None:
    starter = Starter([3, 3, 3])
    sup = supervisor(starter, ["conversation", "projections"], Health(),
                     RestartPolicy(first_delay=0.001, max_delay=0.001, quick_failures=2))
    with pytest.raises(WorkerFailed, match=r"worker conversation keeps failing.*status 3"):
        await asyncio.wait_for(sup.run(asyncio.Event()), 5)
    # the other worker (still running) was stopped with SIGTERM on the way out
    survivors = [p for p in starter.started if p.signals]
    assert [p.signals for p in survivors] == [[signal.SIGTERM]]
    assert all(p.returncode is not None for p in starter.started)


@run
async def test_stop_sends_sigterm_to_every_worker_and_waits() -> None:
    starter = Starter([])
    sup = supervisor(starter, ["ingest", "conversation", "projections"], Health(),
                     RestartPolicy())
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    while len(starter.started) < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [p.signals for p in starter.started] == [[signal.SIGTERM]] * 3
    assert sup.ports() == []


def test_not_ready_reason_names_what_the_worker_waits_for() -> None:
    assert not_ready_reason({"ready": False, "retrying": {"conversation": "KafkaError: x"},
                             "components": {"conversation": False}}) == (
        "conversation: KafkaError: x")
    assert not_ready_reason({"ready": False, "components": {"stores": True, "ingest": False}}
                            ) == "ingest not ready"
    assert not_ready_reason({}) == "not ready"


# --- /metrics of several processes -----------------------------------------------------

def process_metrics(service: str, events: int, lag: float | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("bonychat_events", "Gateway events", ["service", "outcome"],
                      registry=registry)
    counter.labels(service, "accepted").inc(events)
    counter.labels("all", "accepted").inc(events)
    sizes = Histogram("bonychat_batch_size", "Records", ["service"], buckets=(10, 100),
                      registry=registry)
    sizes.labels(service).observe(events)
    if lag is not None:
        Gauge("bonychat_projection_lag", "lag", ["follower"], registry=registry).labels(
            "projection:conversations").set(lag)
    return registry


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_merged_metrics_read_like_one_process() -> None:
    parent = process_metrics("http", 1)
    children = [generate_latest(process_metrics("ingest", 5)).decode(),
                generate_latest(process_metrics("conversation", 50, lag=7)).decode()]
    merged = CollectorRegistry()

    class Merged:
        def collect(self) -> object:
            return merge([parent.collect(), *(text_string_to_metric_families(t)
                                              for t in children)])

    merged.register(Merged())  # type: ignore[arg-type]
    text = generate_latest(merged).decode()
    found = samples(text)
    event = "bonychat_events_total"
    assert found[(event, (("outcome", "accepted"), ("service", "ingest")))] == 5
    assert found[(event, (("outcome", "accepted"), ("service", "conversation")))] == 50
    assert found[(event, (("outcome", "accepted"), ("service", "all")))] == 56  # summed
    assert found[("bonychat_batch_size_count", (("service", "conversation"),))] == 1
    assert found[("bonychat_batch_size_bucket", (("le", "100.0"), ("service", "ingest")))] == 1
    assert found[("bonychat_projection_lag", (("follower", "projection:conversations"),))] == 7
    # one HELP/TYPE block per family, as Prometheus requires
    assert text.count("# TYPE bonychat_events_total counter") == 1
    assert text.count("# TYPE bonychat_events_created gauge") == 1
    created = [v for (name, _), v in found.items() if name == "bonychat_events_created"]
    assert len(created) == 4 and all(v > 1e9 for v in created)  # a time, not a sum
