"""Retry with backoff, readiness from watched dependencies, the HTTP sink's fast 503."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber, ProducerFenced
from eventsourcing.persistence import OperationalError

from services.conversation.application.ports import ConcurrencyConflict
from services.http.ports import SinkUnavailableError
from services.runtime import sinks
from services.runtime.locks import while_leader
from services.runtime.observability import Health
from services.runtime.retry import Backoff, is_transient, retrying
from services.runtime.sinks import KafkaSink
from services.runtime.topics import Topics


def _raised_from(cause: BaseException) -> RuntimeError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("reading tracked positions failed") from exc
    except RuntimeError as wrapped:
        return wrapped


@pytest.mark.parametrize("exc", [
    psycopg.OperationalError("terminating connection due to administrator command"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    OperationalError("consuming input failed"),  # eventsourcing's wrapper
    KafkaConnectionError("connection refused"),
    ConcurrencyConflict("a tracked position did not move forward"),
    ConnectionRefusedError(),
    _raised_from(psycopg.OperationalError("server closed the connection")),
])
def test_dependency_failures_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [ValueError("bad"), KeyError("x"), TypeError("bug"),
                                 _raised_from(ZeroDivisionError()),
                                 # a producer that lost its sequence state needs a new process
                                 OutOfOrderSequenceNumber(), ProducerFenced()])
def test_bugs_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(initial=0.2, maximum=5.0)
    delays = [backoff.next_delay() for _ in range(10)]
    for attempt, delay in enumerate(delays):
        nominal = min(5.0, 0.2 * 2 ** attempt)
        assert nominal / 2 <= delay <= nominal
    assert max(delays) <= 5.0 and delays[-1] >= 2.5
    backoff.reset()
    assert backoff.next_delay() <= 0.2


def _fast() -> Backoff:
    return Backoff(initial=0.001, maximum=0.002)


def test_retrying_reruns_after_transient_failures_and_reports_not_ready() -> None:
    health = Health()
    health.expect("svc")
    calls: list[dict[str, Any]] = []

    async def work(stop: asyncio.Event) -> None:
        calls.append(health())
        if len(calls) < 3:
            raise psycopg.OperationalError("connection refused")
        health.set_ready("svc")

    asyncio.run(retrying("svc", work, asyncio.Event(), health, _fast()))
    assert len(calls) == 3
    assert calls[1]["ready"] is False
    assert "OperationalError: connection refused" in calls[1]["retrying"]["svc"]
    assert health()["ready"] is True and "retrying" not in health()


def test_retrying_lets_a_bug_through() -> None:
    async def work(stop: asyncio.Event) -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(retrying("svc", work, asyncio.Event(), Health(), _fast()))


def test_retrying_stops_waiting_when_asked_to_stop() -> None:
    calls = 0

    async def main() -> None:
        stop = asyncio.Event()

        async def work(_: asyncio.Event) -> None:
            nonlocal calls
            calls += 1
            stop.set()
            raise KafkaConnectionError("broker down")

        await retrying("svc", work, stop, Health(), Backoff(initial=60, maximum=60))

    asyncio.run(asyncio.wait_for(main(), 10))
    assert calls == 1


def test_a_dependency_down_makes_the_process_not_ready_until_it_is_back() -> None:
    health = Health()
    health.expect("http")
    health.set_ready("http")
    health.set_dependency("kafka", True)
    assert health()["ready"] is True
    health.set_dependency("kafka", False, "KafkaError: no broker")
    body = health()
    assert body["ready"] is False and body["live"] is True
    assert body["dependencies"] == {"kafka": False}
    assert body["down"] == {"kafka": "KafkaError: no broker"}
    assert not health.dependency_up("kafka") and health.dependency_up("postgresql")
    health.set_dependency("kafka", True)
    assert health()["ready"] is True and "down" not in health()


class _Lock:
    name = "test"

    def __init__(self) -> None:
        self.held = False
        self.acquired = 0

    async def try_acquire(self) -> bool:
        self.held = True
        self.acquired += 1
        return True

    async def still_held(self) -> bool:
        return self.held

    async def release(self) -> None:
        self.held = False


def test_a_leader_whose_work_fails_releases_the_lock_and_competes_again() -> None:
    lock = _Lock()
    held_during: list[bool] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def work(_: asyncio.Event) -> None:
            held_during.append(lock.held)
            if len(held_during) < 3:
                raise OperationalError("terminating connection due to administrator command")
            stop.set()

        await while_leader(lock, stop, work, _fast())

    asyncio.run(asyncio.wait_for(main(), 10))
    assert held_during == [True, True, True]
    assert lock.acquired == 3 and not lock.held


def _sink(monkeypatch: pytest.MonkeyPatch, health: Health, timeout: float = 30) -> KafkaSink:
    produced: list[int] = []

    async def never_acknowledged(producer: Any, records: Any) -> None:
        produced.append(len(records))
        await asyncio.Event().wait()

    monkeypatch.setattr(sinks, "produce", never_acknowledged)
    sink = KafkaSink(producer=None, topics=Topics(), health=health,  # type: ignore[arg-type]
                     timeout=timeout)
    sink.produced = produced  # type: ignore[attr-defined]
    return sink


def test_http_ingest_refuses_without_producing_while_kafka_is_down(
        monkeypatch: pytest.MonkeyPatch) -> None:
    health = Health()
    health.set_dependency("kafka", False, "KafkaError: no broker")
    sink = _sink(monkeypatch, health)
    with pytest.raises(SinkUnavailableError, match="Kafka is unreachable"):
        asyncio.run(sink.submit([]))
    assert sink.produced == []  # type: ignore[attr-defined]


def test_a_waiting_request_is_refused_once_kafka_is_found_down(
        monkeypatch: pytest.MonkeyPatch) -> None:
    health = Health()
    health.set_dependency("kafka", True)
    sink = _sink(monkeypatch, health, timeout=600)

    async def main() -> None:
        asyncio.get_running_loop().call_later(
            0.3, health.set_dependency, "kafka", False, "KafkaError: no broker")
        await sink.submit([])

    with pytest.raises(SinkUnavailableError, match="became unreachable"):
        asyncio.run(asyncio.wait_for(main(), 60))
    assert sink.produced == [0]  # type: ignore[attr-defined]


def test_a_request_waits_for_acknowledgements_at_most_the_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sink = _sink(monkeypatch, Health(), timeout=0.3)
    with pytest.raises(SinkUnavailableError, match=r"within 0\.3 s"):
        asyncio.run(asyncio.wait_for(sink.submit([]), 60))


def test_dependency_gauge_and_readiness_follow_the_watch() -> None:
    from prometheus_client import CollectorRegistry

    from services.http.telemetry import ReadinessCollector

    health = Health()
    registry = CollectorRegistry()
    registry.register(ReadinessCollector(health))
    health.set_dependency("postgresql", True)
    assert registry.get_sample_value("bonychat_dependency_up",
                                     {"dependency": "postgresql"}) == 1.0
    health.set_dependency("postgresql", False, "AdminShutdown: terminating connection")
    assert registry.get_sample_value("bonychat_dependency_up",
                                     {"dependency": "postgresql"}) == 0.0
    assert registry.get_sample_value("bonychat_ready") == 0.0


def test_a_producer_that_lost_its_sequence_state_ends_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a broker restart the idempotent producer may fail every later send to a
    partition with OutOfOrderSequenceNumber: the sink must not keep answering 503 on it
    for good, but end the process (exit 1) so that its supervisor gives it a new producer."""
    async def out_of_order(producer: Any, records: Any) -> None:
        raise OutOfOrderSequenceNumber()

    monkeypatch.setattr(sinks, "produce", out_of_order)
    sink = KafkaSink(producer=None, topics=Topics(), health=Health())  # type: ignore[arg-type]

    async def main() -> None:
        stop = asyncio.Event()
        watching = asyncio.create_task(retrying("http-producer", sink.watch, stop, Health(),
                                                _fast()))
        await asyncio.sleep(0)
        assert not watching.done()
        with pytest.raises(SinkUnavailableError, match="did not take the events"):
            await sink.submit([])
        with pytest.raises(SinkUnavailableError, match="must be replaced"):
            await sink.submit([])  # refused at once from now on
        with pytest.raises(OutOfOrderSequenceNumber):
            await watching  # not retried in place: the serve process fails

    asyncio.run(asyncio.wait_for(main(), 10))


def test_the_sink_watch_ends_quietly_at_stop() -> None:
    sink = KafkaSink(producer=None, topics=Topics(), health=Health())  # type: ignore[arg-type]

    async def main() -> None:
        stop = asyncio.Event()
        watching = asyncio.create_task(sink.watch(stop))
        await asyncio.sleep(0)
        stop.set()
        await watching

    asyncio.run(asyncio.wait_for(main(), 10))
