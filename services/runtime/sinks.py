"""Event sinks behind ``POST /v1/events`` (:class:`services.http.ports.EventSink`).

:class:`KafkaSink` hands commands to the command topic and invalid items to the
DLQ, returning once the broker has acknowledged all of them. :class:`EmbeddedSink`
runs the items through the in-process pipeline (one batch at a time).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.commands import CommandBase, CommandMessage

from ..embedded import EmbeddedPipeline
from ..http.ports import SinkUnavailableError
from ..ingest.normalise import Invalid
from .kafka import Headers, RecordBatches, partitions_of, reason_header
from .observability import Health, RuntimeMetrics
from .topics import Topics, partition_key


def encode_command(cmd: CommandBase) -> bytes:
    """``CommandMessage(body=cmd).model_dump_json()``, written by orjson (4x faster).

    A model's ``__dict__`` holds exactly its fields, in the order pydantic
    serialises them, and ``OPT_UTC_Z`` writes UTC times with ``Z`` as pydantic
    does, so the record is the same ``CommandMessage`` JSON either way (checked
    byte for byte on generated streams). Anything else in ``__dict__`` (a cached
    property, say) sends it back to pydantic.
    """
    values = cmd.__dict__
    if len(values) != len(type(cmd).model_fields):
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


def produce_timeout() -> float:
    """``BONYCHAT_HTTP_PRODUCE_TIMEOUT_SECONDS`` (10): the longest a POST waits for acks."""
    text = os.environ.get("BONYCHAT_HTTP_PRODUCE_TIMEOUT_SECONDS", "").strip()
    return float(text) if text else 10.0


class KafkaSink:
    """Commands to the command topic, invalid items to the DLQ (``source=http``).

    While the dependency watch finds Kafka unreachable (``health``), requests are
    refused at once, and so are those already waiting for acknowledgements when
    it finds so; a request whose acknowledgements take longer than
    :func:`produce_timeout` is refused too. Either way the gateway gets 503 and
    retries; records a refused request had already handed to the producer may
    still be written, and are then counted as duplicates downstream.
    """

    def __init__(self, *, producer: AIOKafkaProducer, topics: Topics,
                 metrics: RuntimeMetrics | None = None, health: Health | None = None,
                 timeout: float | None = None) -> None:
        self.producer = producer
        self.topics = topics
        self.metrics = metrics
        self.health = health
        self.timeout = produce_timeout() if timeout is None else timeout
        self.closed = False

    def _kafka_up(self) -> bool:
        return self.health is None or self.health.dependency_up("kafka")

    async def submit(self, items: list[CommandBase | Invalid]) -> None:
        if self.closed:
            raise SinkUnavailableError("the server is shutting down")
        if not self._kafka_up():
            raise SinkUnavailableError("Kafka is unreachable")
        task = asyncio.ensure_future(
            produce(self.producer, out_records(self.topics, items, "http")))
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
            raise SinkUnavailableError(f"Kafka did not take the events: {exc}") from exc
        finally:
            task.cancel()
        if self.metrics is not None:
            self.metrics.count_ingest(items, "http", service="http")


class EmbeddedSink:
    """Processes each request's items in-process, then projects them."""

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
            result = self.pipeline.processor.process(items, source="http")
            self.pipeline.catch_up()
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
            result = self.pipeline.processor.process(commands, source="sweep")
            self.pipeline.catch_up()
        if self.on_processed is not None and result.events:
            self.on_processed({c.workspace_id for c in commands})
        if self.metrics is not None:
            self.metrics.count_batch(commands, result, "sweep")
