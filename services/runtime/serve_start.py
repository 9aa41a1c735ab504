"""Building one ``bonychat serve`` process: its stores, Kafka clients and services.

:func:`open_process_stores` and :func:`start_kafka` go through :class:`.starting.Startup`
(a dependency down at start-up is waited for); :func:`start_embedded` wires the
in-process pipeline instead. What they build is held by a :class:`Process`, which
:mod:`.serve` supervises and tears down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from services.composition import Stores, embedded_pipeline, open_stores
from services.runtime.dependencies import KAFKA, POSTGRES, DependencyWatch
from services.runtime.kafka import make_producer
from services.runtime.locks import make_lock
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import bounded
from services.runtime.starting import Startup, Unavailable
from services.runtime.topics import KafkaTuning, Topics
from services.runtime.wakeup import make_wakeup
from services.runtime.workers import Supervisor
from services.settings import Settings

log = logging.getLogger("bonychat.serve")
Runner = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class StartupError(Exception):
    """Infrastructure the process needs is unavailable; reported as one line."""


@dataclass
class Process:
    """Everything one serve process owns, torn down in reverse order."""

    settings: Settings
    metrics: RuntimeMetrics = field(default_factory=RuntimeMetrics)
    health: Health = field(default_factory=Health)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stores: Stores | None = None
    producer: AIOKafkaProducer | None = None
    sink: Any = None
    http: Any = None
    runners: dict[str, Runner] = field(default_factory=dict)
    watch: DependencyWatch | None = None
    workers: Supervisor | None = None
    #: a worker of a parent serve: the parent alone watches the dependencies
    worker: bool = False


async def open_process_stores(proc: Process, startup: Startup) -> bool:
    proc.health.expect("stores")
    dependency = POSTGRES if proc.settings.is_postgres else "database"
    try:
        stores = await startup.step(dependency,
                                    lambda: asyncio.to_thread(open_stores, proc.settings))
    except Unavailable as exc:
        raise StartupError(f"cannot open database: {exc}") from None
    if stores is None:
        return False
    proc.stores = stores
    proc.health.set_ready("stores")
    return True


async def start_embedded(proc: Process) -> None:
    from services.runtime.sinks import EmbeddedSink

    assert proc.stores is not None
    pipeline = embedded_pipeline(proc.stores, proc.settings)
    await asyncio.to_thread(pipeline.catch_up)
    proc.sink = EmbeddedSink(pipeline=pipeline, metrics=proc.metrics)
    from services.projections.entrypoints.sweep import InactivitySweep

    proc.runners["sweep"] = InactivitySweep(stores=proc.stores, submit=proc.sink.sweep,
                                            metrics=proc.metrics).run
    log.info("embedded mode: no BONYCHAT_KAFKA_BOOTSTRAP, serving the in-process pipeline")


async def start_kafka(proc: Process, names: list[str], bootstrap: str,
                       startup: Startup) -> bool:
    from services.conversation.entrypoints.kafka import ConversationService
    from services.ingest.entrypoints.kafka import IngestService
    from services.projections.entrypoints.kafka import ProjectionService
    from services.projections.entrypoints.relay import OutboxRelay
    from services.runtime.sinks import KafkaSink

    stores, settings = proc.stores, proc.settings
    assert stores is not None
    try:
        topics = Topics.from_settings(settings)
        tuning = KafkaTuning.from_settings(settings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None

    async def start_producer() -> AIOKafkaProducer:
        producer = make_producer(bootstrap, tuning)
        try:
            await producer.start()
        except BaseException:
            await bounded(producer.stop(), 5, "closing a producer that did not start")
            raise
        return producer

    try:
        producer = await startup.step(KAFKA, start_producer)
    except Unavailable as exc:
        raise StartupError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    if producer is None:
        return False
    proc.producer = producer
    proc.sink = KafkaSink(producer=proc.producer, topics=topics, metrics=proc.metrics,
                          health=proc.health, timeout=settings.http_produce_timeout_seconds)
    proc.runners["http-producer"] = proc.sink.watch  # ends the process if it breaks
    if not proc.worker:
        proc.watch = DependencyWatch(proc.health, postgres=postgres_params(settings),
                                     producer=proc.producer,
                                     interval=settings.health_probe_seconds)
    common: dict[str, Any] = {"metrics": proc.metrics, "health": proc.health}
    kafka: dict[str, Any] = {"bootstrap": bootstrap, "topics": topics, "tuning": tuning,
                             "group_prefix": settings.consumer_group_prefix}

    def lock(name: str) -> Any:
        return make_lock(settings.database_url, settings.is_postgres,
                         settings.sqlite_path(), name)

    def wakeup(min_interval_ms: int) -> Any:
        return make_wakeup(settings.database_url, settings.is_postgres, min_interval_ms / 1000)

    gateway_input = settings.conversation_input == "gateway"  # then no ingest (serve.py)
    if "ingest" in names:
        proc.runners["ingest"] = IngestService(producer=proc.producer, **kafka, **common).run
    if "conversation" in names:
        proc.runners["conversation"] = ConversationService(
            events=stores.events, producer=proc.producer if gateway_input else None,
            **kafka, **common).run
    if "conversation" in names:  # sweep requests go to the owners of the contacts
        from services.projections.entrypoints.sweep import InactivitySweep

        proc.runners["sweep"] = InactivitySweep(stores=stores, submit=proc.sink.submit,
                                                metrics=proc.metrics).run
    if "relay" in names or ("conversation" in names and settings.relay_with_conversation):
        proc.runners["relay"] = OutboxRelay(
            events=stores.events, positions=stores.read_models, topics=topics,
            producer=proc.producer, lock=lock(f"bonychat:relay:{topics.events}"),
            page=settings.relay_page, wakeup=wakeup(settings.relay_interval_ms),
            **common).run
    if "projections" in names:
        proc.runners["projections"] = ProjectionService(
            events=stores.events, read_models=stores.read_models,
            lock=lock("bonychat:projections"), page=settings.projections_page,
            wakeup=wakeup(settings.projections_interval_ms), **common).run
    log.info("kafka mode", extra={"services": names, "bootstrap": bootstrap,
                                  "topics": list(topics.all())})
    return True


def postgres_params(settings: Settings) -> dict[str, Any] | None:
    if not settings.is_postgres:
        return None
    from services.composition.postgres import parse_url

    return dict(parse_url(settings.database_url).params)
