"""Helpers for the Kafka runtime tests: real Kafka + PostgreSQL from ``infra/local.env``.

Every test gets fresh topics (``BONYCHAT_TOPIC_SUFFIX``), its own PostgreSQL
schema (``?schema=``) and its own consumer group prefix, so tests never see
each other's data. Services run as ``bonychat serve`` subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from infra.kafka.topics import TOPICS
from services.composition import Stores, embedded_pipeline, open_stores
from services.projections.application.ports import ReadModelStore
from services.projections.domain.metrics import GROUPINGS, MetricsQuery, compute
from services.runtime.topics import Topics
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: the services run with the default BONYCHAT_CONVERSATION_INPUT (World.env drops the
#: caller's BONYCHAT_* variables): with "gateway" the conversation service reads the
#: gateway topic itself, and ingest has nothing to do
GATEWAY_INPUT = Settings.model_fields["conversation_input"].default == "gateway"
#: the service whose consumer reads the gateway topic (lag, undecodable records, offsets)
GATEWAY_READER = "conversation" if GATEWAY_INPUT else "ingest"
LOCAL_ENV = ROOT / "infra" / "local.env"
BONYCHAT = Path(sys.executable).parent / "bonychat"
T = TypeVar("T")


def load_local_env() -> dict[str, str]:
    """``KEY=VALUE`` lines of ``infra/local.env`` (empty if there is none)."""
    if not LOCAL_ENV.exists():
        return {}
    env: dict[str, str] = {}
    for raw in LOCAL_ENV.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def reachable_infra() -> dict[str, str]:
    """``infra/local.env`` once Kafka and PostgreSQL there answer; skips the test otherwise."""
    import pytest

    env = load_local_env()
    if "BONYCHAT_KAFKA_BOOTSTRAP" not in env or "BONYCHAT_DATABASE_URL" not in env:
        pytest.skip("no infra/local.env: run infra/up.sh (make infra-up) first")
    try:
        psycopg.connect(env["BONYCHAT_DATABASE_URL"], connect_timeout=3).close()

        async def ping() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=env["BONYCHAT_KAFKA_BOOTSTRAP"],
                                        request_timeout_ms=5_000)
            await admin.start()
            await admin.close()

        asyncio.run(ping())
    except Exception as exc:
        pytest.skip(f"Kafka/PostgreSQL from infra/local.env not reachable: {exc}")
    return env


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def wait_until(probe: Callable[[], T | None], timeout: float, what: str,
               interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# --- Kafka ------------------------------------------------------------------------------

def _topic_config(name: str) -> dict[str, str]:
    """The production config of ``name`` (a topic of :data:`TOPICS` plus a test suffix)."""
    for base, (_, config) in TOPICS.items():
        if name == base or name.startswith(base + "."):
            return dict(config)
    return {}


async def _create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=_topic_config(name))
                                   for name in names], timeout_ms=15_000)
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        await admin.delete_topics(list(names), timeout_ms=15_000)
    finally:
        await admin.close()


async def _publish(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]
                   ) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                enable_idempotence=True, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def publish(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Produce ``(key, value)`` records in order (default partitioner, like a gateway)."""
    asyncio.run(_publish(bootstrap, topic, records))


@dataclass(frozen=True)
class Consumed:
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    partition: int


async def _read_all(bootstrap: str, topic: str, idle_ms: int) -> list[Consumed]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    found: list[Consumed] = []
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=idle_ms)
            if not batches:
                return found
            for records in batches.values():
                found.extend(Consumed(r.key, r.value, {k: v.decode() for k, v in r.headers},
                                      r.partition) for r in records)
    finally:
        await consumer.stop()


def read_topic(bootstrap: str, topic: str, idle_ms: int = 1_500) -> list[Consumed]:
    """Every record of ``topic`` so far (until nothing arrives for ``idle_ms``)."""
    return asyncio.run(_read_all(bootstrap, topic, idle_ms))


# --- one isolated world per test ---------------------------------------------------------

@dataclass
class World:
    """Topics, schema and group prefix of one test, and the env to run services in."""

    bootstrap: str
    database_url: str
    suffix: str
    partitions: int
    topics: Topics = field(init=False)
    processes: list[ServeProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topics = Topics.with_suffix(self.suffix)

    @property
    def schema(self) -> str:
        return f"t_{self.suffix}"

    @property
    def url(self) -> str:
        sep = "&" if "?" in self.database_url else "?"
        return f"{self.database_url}{sep}schema={self.schema}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
        env.update({
            "BONYCHAT_KAFKA_BOOTSTRAP": self.bootstrap, "BONYCHAT_DATABASE_URL": self.url,
            "BONYCHAT_TOPIC_SUFFIX": self.suffix, "BONYCHAT_HTTP_PORT": "0",
            "BONYCHAT_CONSUMER_GROUP_PREFIX": f"bonychat-{self.suffix}",
            "BONYCHAT_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "BONYCHAT_GATEWAY_TOKENS": "ws_http=gw-token",
            "BONYCHAT_ANALYTICS_TOKENS": "ws_http=an-token",
        })
        env.update(overrides)
        return env

    def serve(self, services: str = "ingest,conversation,projections", name: str = "serve",
              **overrides: str) -> ServeProcess:
        process = ServeProcess.start(services, self.env(**overrides), name)
        self.processes.append(process)
        return process

    def publish(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        publish(self.bootstrap, self.topics.gateway, records)

    def stores(self) -> Stores:
        return open_stores(Settings(database_url=self.url))

    @contextmanager
    def opened(self) -> Iterator[Stores]:
        stores = self.stores()
        try:
            yield stores
        finally:
            stores.close()

    def create(self) -> None:
        asyncio.run(_create_topics(self.bootstrap, self.topics.all(), self.partitions))

    def destroy(self) -> None:
        for process in self.processes:
            process.stop()
            if not os.environ.get("BONYCHAT_KEEP_TEST_LOGS"):
                process.log_path.unlink(missing_ok=True)
        try:
            asyncio.run(_delete_topics(self.bootstrap, self.topics.all()))
        except Exception as exc:  # cleanup only
            print(f"topic cleanup failed: {exc}", file=sys.stderr)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def new_world(env: dict[str, str], partitions: int = 4) -> World:
    world = World(env["BONYCHAT_KAFKA_BOOTSTRAP"], env["BONYCHAT_DATABASE_URL"],
                  uuid.uuid4().hex[:10], partitions)
    world.create()
    return world


class ServeProcess:
    """One ``bonychat serve`` subprocess with its stderr (JSON log lines) in a file."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path, name: str) -> None:
        self.popen = popen
        self.log_path = log_path
        self.name = name

    @classmethod
    def start(cls, services: str, env: dict[str, str], name: str) -> ServeProcess:
        handle, path = tempfile.mkstemp(prefix=f"bonychat-{name}-", suffix=".log")
        popen = subprocess.Popen([str(BONYCHAT), "serve", "--services", services], env=env,
                                 stdout=subprocess.DEVNULL, stderr=handle, cwd=ROOT)
        os.close(handle)
        return cls(popen, Path(path), name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        def probe() -> re.Match[str] | None:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.popen.returncode}:\n{self.log()}")
            return re.search(pattern, self.log())
        return wait_until(probe, timeout, f"{self.name} to log {pattern!r}")

    def port(self, timeout: float = 30) -> int:
        return int(self.wait_log(r"listening on http://[^:]+:(\d+)", timeout).group(1))

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


# --- expected results ----------------------------------------------------------------------

def snapshot(read_models: ReadModelStore, workspaces: Iterable[str]) -> dict[str, Any]:
    """Conversation rows and every metrics grouping of each workspace."""
    result: dict[str, Any] = {}
    for ws in workspaces:
        rows = sorted((r.public() for r in read_models.conversations(ws)),
                      key=lambda row: row["conversation_id"])
        facts = list(read_models.facts(ws))
        result[ws] = {"conversations": rows,
                      "metrics": {g: compute(MetricsQuery(ws, g), facts) for g in GROUPINGS}}
    return result


def embedded_snapshot(lines: Sequence[bytes], workspaces: Iterable[str]) -> dict[str, Any]:
    """What ``bonychat import`` of ``lines`` into a fresh SQLite file produces."""
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=os.path.join(folder, "expected.db"))
        stores = open_stores(settings)
        try:
            embedded_pipeline(stores, settings).run(lines)
            return snapshot(stores.read_models, workspaces)
        finally:
            stores.close()


# --- a generated gateway stream -------------------------------------------------------------

WORKSPACES = ("ws_a", "ws_b", "ws_c")
CHANNELS = ("whatsapp", "facebook", "viber", "webchat", "email", "telegram")
KINDS = (("message.received", 34), ("message.sent", 20), ("conversation.assign", 8),
         ("conversation.close", 13), ("welcome", 4), ("conversation.open", 6),
         ("dialogflow.response", 6), ("contact.merge", 1.5))
INVALID = (
    b'{"event_id": "broken", "type": ', b"[1, 2, 3]", b'"just a string"',
    b'{"type": "message.received", "workspace_id": "ws_a", "contact_id": "c1"}',
    b'{"event_id": "x1", "type": "message.teleported", "workspace_id": "ws_a", '
    b'"contact_id": "c1", "occurred_at": "2026-10-01T10:00:00Z"}',
    b'{"event_id": "x2", "type": "message.sent", "workspace_id": "ws_b", '
    b'"contact_id": "c2", "occurred_at": "2026-10-01T10:00:00"}',
)


@dataclass
class Stream:
    """Gateway records ``(key, value)`` in publish order, and what they contain."""

    records: list[tuple[bytes | None, bytes]]
    invalid: int
    duplicates: int

    @property
    def lines(self) -> list[bytes]:
        return [value for _, value in self.records]


def _envelope(rng: Any, kind: str, ws: str, contact: str, *, event_id: str, at: str,
              secondary: str | None) -> dict[str, Any]:
    env: dict[str, Any] = {"event_id": event_id, "type": kind, "workspace_id": ws,
                           "contact_id": contact, "occurred_at": at}
    agent = {"type": rng.choice(("user", "automation", "dialogflow")),
             "id": f"agent-{rng.randint(1, 4)}"}
    if kind == "message.received":
        env["channel"] = {"type": rng.choice(CHANNELS), "id": "line-1"}
        env["data"] = {"message_id": f"m-{event_id}", "text": "hello"}
    elif kind == "message.sent":
        env["actor"] = agent
    elif kind == "conversation.assign":
        env["actor"] = agent
        env["data"] = {"assignee_id": rng.choice(("u1", "u2", "u3", None))}
        if rng.random() < 0.5:
            env["data"]["team_id"] = rng.choice(("sales", "support", None))
    elif kind == "conversation.close":
        env["actor"] = agent
        env["data"] = {"category": rng.choice(("done", "spam", None)), "summary": "ok"}
    elif kind == "welcome":
        env["channel"] = {"type": rng.choice(("facebook", "viber", "whatsapp"))}
    elif kind == "conversation.open":
        env["actor"] = {"type": rng.choice(("user", "automation")), "id": "agent-9"}
        if rng.random() < 0.5:
            env["channel"] = {"type": rng.choice(CHANNELS)}
    elif kind == "dialogflow.response":
        flag = rng.choice((True, False, "true", "FALSE", None))
        env["data"] = {"parameters": {} if flag is None else {"RB_MARKDONE": flag}}
    else:
        env["data"] = {"secondary_contact_id": secondary}
    return env


def generate_stream(count: int = 3_000, *, partitions: int = 4, seed: int = 7,
                    contacts: int = 40, workspaces: Sequence[str] = WORKSPACES) -> Stream:
    """A realistic mix: lifecycles, rejections, redeliveries, invalid lines and merges.

    A merge's secondary contact is always one whose key lands on the primary's
    partition, so the outcome never depends on how partitions interleave.
    """
    import json
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(seed)
    clock = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
    buckets: dict[tuple[str, int], list[str]] = {}
    for ws in workspaces:
        for i in range(contacts):
            cid = f"c{i:03d}"
            buckets.setdefault((ws, partition_of(f"{ws}:{cid}".encode(), partitions)),
                               []).append(cid)
    kinds, weights = zip(*KINDS, strict=True)
    records: list[tuple[bytes | None, bytes]] = []
    sent: list[tuple[bytes | None, bytes]] = []
    invalid = duplicates = 0
    while len(records) < count:
        clock += timedelta(minutes=rng.uniform(0, 20))
        roll = rng.random()
        if roll < 0.03:
            records.append((None, rng.choice(INVALID)))
            invalid += 1
            continue
        if roll < 0.06 and sent:
            records.append(rng.choice(sent))
            duplicates += 1
            continue
        ws = rng.choice(workspaces)
        contact = f"c{rng.randrange(contacts):03d}"
        key = f"{ws}:{contact}".encode()
        kind = rng.choices(kinds, weights)[0]
        secondary = None
        if kind == "contact.merge":
            secondary = rng.choice(buckets[(ws, partition_of(key, partitions))])
        env = _envelope(rng, kind, ws, contact, event_id=f"{ws}-e{len(records)}",
                        at=clock.strftime("%Y-%m-%dT%H:%M:%SZ"), secondary=secondary)
        record = (key, json.dumps(env).encode())
        records.append(record)
        sent.append(record)
    return Stream(records, invalid, duplicates)


# --- a producer that is not ours: librdkafka's kcat ------------------------------------------

KCAT_CODECS = ("gzip", "snappy", "lz4", "zstd")


def kcat_publish(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]],
                 codec: str, *options: str) -> None:
    """Produce ``(key, value)`` records with ``kcat -P -z codec`` (librdkafka, not aiokafka).

    Keys go to the partition Java's murmur2 partitioner picks, like a gateway on
    a Java or librdkafka client configured ``partitioner=murmur2_random``. One
    record per line, key and value separated by a tab; a record without key is
    a line without tab. ``make test`` installs kcat (``infra/deps.sh``).
    """
    lines = []
    for key, value in records:
        assert b"\n" not in value and b"\t" not in value and b"\t" not in (key or b"")
        lines.append(value if key is None else key + b"\t" + value)
    subprocess.run(
        ["kcat", "-P", "-b", bootstrap, "-t", topic, "-z", codec, "-K", "\t",
         "-X", "partitioner=murmur2_random", "-X", "linger.ms=20",
         "-X", "enable.idempotence=true", *options],
        input=b"\n".join(lines) + b"\n", check=True, timeout=60, capture_output=True)


CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def broker_log_dirs() -> list[Path] | None:
    """The local broker's data directories (``log.dirs`` of infra/up.sh's broker).

    None when the broker's files are not on this machine (a remote broker).
    """
    state = Path(os.environ.get("BONYCHAT_INFRA_STATE") or ROOT / "infra" / ".state")
    properties = state / "kafka" / "server.properties"
    if not properties.is_file():
        return None
    match = re.search(r"^log\.dirs=(.+)$", properties.read_text(), re.M)
    return None if match is None else [Path(d.strip()) for d in match.group(1).split(",")]


def stored_codecs(topic: str) -> set[str] | None:
    """Codecs of the record batches the local broker stored for ``topic`` (its log files).

    None when the broker's files are not here: then only the consumers'
    results show that decoding worked.
    """
    from aiokafka.record.memory_records import MemoryRecords

    dirs = broker_log_dirs()
    if dirs is None:
        return None
    found: set[str] = set()
    for log_dir in dirs:
        for segment in log_dir.glob(f"{topic}-*/*.log"):
            records = MemoryRecords(segment.read_bytes())
            while records.has_next():
                batch = records.next_batch()
                if batch is None:
                    break
                found.add(CODEC_NAMES.get(batch.compression_type, "?"))
    return found


_BATCH_HEADER = 61  # bytes of a v2 record batch before its (compressed) records
_CRC_AT, _CRC_FROM = 17, 21  # CRC-32C field; it covers attributes .. end of batch


def corrupt_stored_batch(topic: str, partition: int, codec: str) -> range | None:
    """Garble the compressed records of the first ``codec`` batch the broker stored.

    The batch's CRC is recomputed, so the fetch passes the CRC check and the
    consumer fails in the decompressor, as with a broken producer's payload
    (brokers validate on produce, so it cannot be produced). The broker serves
    fetches from its files as they are. Returns the batch's offsets, or None
    when the broker's files are not on this machine.
    """
    import struct

    from aiokafka.record.util import calc_crc32c

    dirs = broker_log_dirs()
    if dirs is None:
        return None
    want = next(k for k, v in CODEC_NAMES.items() if v == codec)
    for log_dir in dirs:
        for segment in sorted(log_dir.glob(f"{topic}-{partition}/*.log")):
            data = bytearray(segment.read_bytes())
            at = 0
            while at + _BATCH_HEADER <= len(data):
                base, length = struct.unpack_from(">qi", data, at)
                end = at + 12 + length
                attributes = struct.unpack_from(">h", data, at + _CRC_FROM)[0]
                if attributes & 0x07 == want:
                    start = at + _BATCH_HEADER + 4  # keep the codec's own magic number
                    data[start:end] = bytes(0xA5 ^ b for b in data[start:end])
                    struct.pack_into(">I", data, at + _CRC_AT,
                                     calc_crc32c(bytes(data[at + _CRC_FROM:end])))
                    with segment.open("r+b") as handle:
                        handle.seek(at)
                        handle.write(data[at:end])
                    last_delta = struct.unpack_from(">i", data, at + 23)[0]
                    return range(base, base + last_delta + 1)
                at = end
    raise AssertionError(f"no {codec} batch stored for {topic}-{partition}")
