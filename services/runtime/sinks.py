"""Event sinks behind ``POST /v1/events`` (:class:`services.http.ports.EventSink`).

:class:`KafkaSink` hands commands to the command topic and invalid items to the
DLQ, returning once the broker has acknowledged all of them. :class:`EmbeddedSink`
runs the items through the in-process pipeline (one batch at a time).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.commands import COMMAND_CLASSES, CommandBase, CommandMessage
from services.http.ports import SinkUnavailableError
from services.in_process.pipeline import EmbeddedPipeline
from services.ingest.domain.normalise import Invalid
from services.runtime.group_send import GroupSend
from services.runtime.kafka import Headers, RecordBatches, partitions_of, reason_header
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import PRODUCER_FATAL
from services.runtime.topics import Topics, partition_key

log = logging.getLogger(__name__)


_FIELD_COUNTS: dict[type[CommandBase], int] = {cls: len(cls.model_fields)
                                               for cls in COMMAND_CLASSES}


def encode_command(cmd: CommandBase) -> bytes:
    """``CommandMessage(body=cmd).model_dump_json()``, written by orjson (4x faster).

    A model's ``__dict__`` holds exactly its fields, in the order pydantic
    serialises them, and ``OPT_UTC_Z`` writes UTC times with ``Z`` as pydantic
    does, so the record is the same ``CommandMessage`` JSON either way (checked
    byte for byte on generated streams). Anything else in ``__dict__`` (a cached
    property, say) sends it back to pydantic.
    """
    values = cmd.__dict__
    if len(values) != _FIELD_COUNTS.get(type(cmd)):  # (``model_fields`` itself: 0.3 µs)
        return CommandMessage(body=cmd).model_dump_json().encode()
    return orjson.dumps({"body": values}, option=orjson.OPT_UTC_Z)


def command_record(cmd: CommandBase) -> tuple[bytes, bytes]:
    """(key, value) of a command on the command topic."""
    return partition_key(cmd.workspace_id, cmd.contact_id), encode_command(cmd)


def dead_letter_headers(reason: str, source: str, extra: Headers | None = None) -> Headers:
    return [("reason", reason_header(reason)), ("source", source.encode()), *(extra or [])]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce (built off the event loop, sent on it)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None = None


def out_records(topics: Topics, items: Sequence[CommandBase | Invalid], source: str, *,
                dlq_keys: Sequence[bytes | None] | None = None,
                dlq_extra: Sequence[Headers] | None = None) -> list[OutRecord]:
    """Commands for the command topic and invalid items for the DLQ, in ``items`` order."""
    out: list[OutRecord] = []
    for index, item in enumerate(items):
        if isinstance(item, Invalid):
            key = dlq_keys[index] if dlq_keys is not None else None
            extra = dlq_extra[index] if dlq_extra is not None else None
            out.append(OutRecord(topics.dlq, key, item.raw.encode("utf-8", errors="replace"),
                                 dead_letter_headers(item.reason, source, extra)))
        else:
            key, value = command_record(item)
            out.append(OutRecord(topics.commands, key, value))
    return out


async def produce(producer: AIOKafkaProducer, records: Sequence[OutRecord]) -> None:
    """Send ``records`` in order and wait until the broker acknowledged every one."""
    if not records:
        return
    out = RecordBatches(producer, await partitions_of(producer, {r.topic for r in records}))
    for r in records:
        out.add(r.topic, r.key, r.value, r.headers)
    acks = await out.submit()
    await asyncio.gather(*acks)


WATCH_SECONDS = 0.25  # how often a waiting request looks at the dependency watch


class KafkaSink:
    """Commands to the command topic, invalid items to the DLQ (``source=http``).

    While the dependency watch finds Kafka unreachable (``health``), requests are
    refused at once, and so are those already waiting for acknowledgements when
    it finds so; a request whose acknowledgements take longer than ``timeout``
    (``Settings.http_produce_timeout_seconds``) is refused too. Either way the gateway gets 503 and
    retries; records a refused request had already handed to the producer may
    still be written, and are then counted as duplicates downstream. Concurrent
    requests are produced together, a round at a time (:class:`.GroupSend`: why),
    so under load a request waits for the rounds before it instead of failing;
    only when the broker cannot keep up for ``timeout`` is it refused (503 with
    ``Retry-After``: the gateway's backoff is the backpressure).

    A producer that lost its sequence state with the broker (``PRODUCER_FATAL``,
    seen after a broker restart) fails every later send to that partition, so
    the sink refuses every request from then on and :meth:`watch` ends the
    process with that error: its supervisor starts it with a new producer, as
    for ingest and the relay (before, such a process answered 503 to every
    request touching that partition until someone restarted it).
    """

    def __init__(self, *, producer: AIOKafkaProducer, topics: Topics,
                 metrics: RuntimeMetrics | None = None, health: Health | None = None,
                 timeout: float = 10.0) -> None:
        self.producer = producer
        self.topics = topics
        self.metrics = metrics
        self.health = health
        self.timeout = timeout
        self.closed = False
        #: the producer-fatal error that ends the process (see the class doc)
        self.broken: BaseException | None = None
        self._broken = asyncio.Event()
        self._send: GroupSend[OutRecord] = GroupSend(
            lambda records: produce(self.producer, records))

    def _kafka_up(self) -> bool:
        return self.health is None or self.health.dependency_up("kafka")

    async def submit(self, items: list[CommandBase | Invalid]) -> None:
        if self.closed:
            raise SinkUnavailableError("the server is shutting down")
        if self.broken is not None:
            raise SinkUnavailableError("the Kafka producer must be replaced; restarting")
        if not self._kafka_up():
            raise SinkUnavailableError("Kafka is unreachable")
        task = asyncio.ensure_future(self._send(out_records(self.topics, items, "http")))
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=WATCH_SECONDS)
                if task.done():
                    break
                if not self._kafka_up():  # went down while we wait: answer now
                    raise SinkUnavailableError("Kafka became unreachable")
                if asyncio.get_running_loop().time() >= deadline:
                    raise SinkUnavailableError(
                        f"Kafka did not acknowledge the events within {self.timeout:g} s")
            task.result()
        except KafkaError as exc:
            if isinstance(exc, PRODUCER_FATAL):
                self._lost(exc)
            raise SinkUnavailableError(f"Kafka did not take the events: {exc}") from exc
        finally:
            task.cancel()
        if self.metrics is not None:
            self.metrics.count_ingest(items, "http", service="http")


    def _lost(self, exc: BaseException) -> None:
        if self.broken is None:
            log.error("the producer lost its sequence state with the broker; ending the "
                      "process so that it is restarted with a new one",
                      extra={"error": f"{type(exc).__name__}: {exc}"})
            self.broken = exc
            self._broken.set()

    async def watch(self, stop: asyncio.Event) -> None:
        """Return at ``stop``; raise the producer-fatal error if one comes first."""
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._broken.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.broken is not None:
            raise self.broken


class EmbeddedSink:
    """Processes each request's items in-process, then projects them.

    A thin driver: the pipeline's unit of work decides and commits (retrying a
    conflict with another process from storage), then the pipeline projects
    (catching up from the store if another process wrote meanwhile).
    """

    def __init__(self, *, pipeline: EmbeddedPipeline,
                 metrics: RuntimeMetrics | None = None) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self._lock = threading.Lock()
        self.closed = False
        #: told the workspaces of each processed request, once its rows are projected
        self.on_processed: Callable[[set[str]], None] | None = None

    def _process(self, items: list[CommandBase | Invalid]) -> None:
        with self._lock:
            result = self.pipeline.process_items(items, source="http")
        if self.on_processed is not None:
            self.on_processed({item.workspace_id for item in items if item.workspace_id})
        if self.metrics is not None:
            self.metrics.count_batch(items, result, "http")

    async def submit(self, items: list[CommandBase | Invalid]) -> None:
        if self.closed:
            raise SinkUnavailableError("the server is shutting down")
        if items:
            await asyncio.to_thread(self._process, items)

    async def sweep(self, commands: list[Any]) -> None:
        """Decide inactivity sweep commands in-process (same lock as requests)."""
        if commands:
            await asyncio.to_thread(self._process_sweep, commands)

    def _process_sweep(self, commands: list[Any]) -> None:
        with self._lock:
            result = self.pipeline.process_items(commands, source="sweep")
        if self.on_processed is not None and result.events:
            self.on_processed({c.workspace_id for c in commands})
        if self.metrics is not None:
            self.metrics.count_batch(commands, result, "sweep")
