"""End-to-end throughput of the Kafka runtime: conversation, relay and projections (and
ingest with ``BONYCHAT_CONVERSATION_INPUT=commands``) as separate ``bonychat serve
--services X`` processes on fresh topics and a fresh schema.

Completion criterion (cheap to poll, exact, independent of outcome mix):

1-2. with the default ``BONYCHAT_CONVERSATION_INPUT=gateway`` (docs/runtime.md,
   "Conversation input") there is no ingest process: the conversation service is
   done when the position it tracks in PostgreSQL for each partition of the
   gateway topic (stored in the same transaction as the events and outcomes) is
   the partition's last offset.

   With ``commands``: 1. ingest is done when its consumer group's committed offsets
   equal the gateway topic's end offsets (it commits only after the broker
   acknowledged every command); 2. the conversation service is done when its
   tracked position of each partition of the command topic is the partition's last
   offset. Which layout a variant runs is asked of its own code
   (:func:`reads_gateway`), so an older checkout (``before@PATH`` in bench.ab) is
   measured with its ingest;
3. the projections are done: their tracked position ``projection:conversations`` is
   at least the event store's max notification id, read after step 2.

Then, outside the timed part, ``processed_events`` must hold exactly one outcome per
distinct valid gateway event of the input (computed with the ingest parser itself),
and the DLQ must hold at least the invalid ones; otherwise the run fails loudly.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from psycopg.sql import SQL, Identifier

from services.ingest.domain.normalise import Invalid, parse
from services.runtime.topics import Topics, group_id

from . import limits, procs
from .procs import CpuSampler, ServeProcess

PROJECTION = "projection:conversations"


@dataclass(frozen=True)
class Expected:
    lines: int
    invalid: int
    outcomes: int  # distinct (workspace_id, event_id) of the valid lines


def expectation(path: Path, lines: Sequence[bytes]) -> Expected:
    """What the pipeline must store for ``lines`` (cached beside the file)."""
    meta = path.with_suffix(".expected.json")
    if meta.exists():
        return Expected(**orjson.loads(meta.read_bytes()))
    keys: set[tuple[str, str]] = set()
    invalid = 0
    for line in lines:
        item = parse(line)
        if isinstance(item, Invalid):
            invalid += 1
        else:
            keys.add(item.dedup_key)
    found = Expected(len(lines), invalid, len(keys))
    meta.write_bytes(orjson.dumps(found.__dict__))
    return found


def reads_gateway(env: dict[str, str]) -> bool:
    """Whether the code that ``env`` runs (this checkout, or ``procs.CHECKOUT``'s) has
    its conversation service read the gateway topic (no ingest process) with ``env``."""
    checkout = env.get(procs.CHECKOUT, "")
    python = str(Path(checkout) / ".venv" / "bin" / "python") if checkout else sys.executable
    answer = subprocess.run(
        [python, "-c", "from services.settings import Settings; "
                       "print(getattr(Settings(), 'conversation_input', 'commands'))"],
        env={k: v for k, v in env.items() if k != procs.CHECKOUT}, cwd=checkout or None,
        capture_output=True, text=True, check=True)
    return answer.stdout.strip() == "gateway"


@dataclass
class World:
    """Topics, schema, consumer group prefix and service processes of one measurement."""

    bootstrap: str
    database_url: str
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)  # an A/B variant's settings
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: list[ServeProcess] = field(default_factory=list)

    @cached_property
    def topics(self) -> Topics:
        """The run's topic names (built once: the latency publisher reads them per event)."""
        return Topics.with_suffix(f"bench{self.tag}")

    @property
    def schema(self) -> str:
        return f"bench_{self.tag}"

    @property
    def prefix(self) -> str:
        return f"bench-{self.tag}"

    @property
    def url(self) -> str:
        sep = "&" if "?" in self.database_url else "?"
        return f"{self.database_url}{sep}schema={self.schema}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
        env.update({"BONYCHAT_KAFKA_BOOTSTRAP": self.bootstrap,
                    "BONYCHAT_DATABASE_URL": self.url,
                    "BONYCHAT_TOPIC_SUFFIX": f"bench{self.tag}", "BONYCHAT_HTTP_PORT": "0",
                    "BONYCHAT_CONSUMER_GROUP_PREFIX": self.prefix,
                    "BONYCHAT_RELAY_WITH_CONVERSATION": "0"})  # the relay: its own process
        env.update({k: v for k, v in os.environ.items() if (k.startswith("BONYCHAT_KAFKA_")
                    or k == "BONYCHAT_CONVERSATION_INPUT")  # the layout measured
                    and k not in ("BONYCHAT_KAFKA_BOOTSTRAP", "BONYCHAT_KAFKA_PORT")})
        env.update(self.extra_env)
        return env

    @cached_property
    def gateway_input(self) -> bool:
        return reads_gateway(self.env())

    def serve(self, services: str | None, name: str) -> ServeProcess:
        """``services=None``: ``bonychat serve`` as a user first runs it (default services,
        default settings: the relay inside conversation, worker processes if the CPUs allow)."""
        env = self.env()
        if services is None and "BONYCHAT_RELAY_WITH_CONVERSATION" not in self.extra_env:
            env.pop("BONYCHAT_RELAY_WITH_CONVERSATION")
        process = ServeProcess(services, env, name)
        self.processes.append(process)
        return process

    def check(self) -> None:
        for process in self.processes:
            process.check()

    async def create(self) -> None:
        await limits.create_topics(self.bootstrap, self.topics.all(), self.partitions)

    def stop(self) -> dict[str, Any]:
        """Stop every service (VmHWM read first); loud if one did not exit cleanly."""
        result: dict[str, Any] = {}
        failures = []
        for process in self.processes:
            code = process.stop()
            result[process.name] = process.peak_rss_mb
            result.update(process.worker_peak_rss_mb)
            if code != 0:
                failures.append(f"{process.name} exited {code}; stderr tail:\n{process.tail()}")
        if failures:
            raise RuntimeError("\n".join(failures))
        for process in self.processes:
            process.discard_log()
        self.processes.clear()
        return result

    async def destroy(self) -> None:
        for process in self.processes:
            process.stop()  # after a failure: logs are kept in bench/.data/logs
        try:
            await limits.delete_topics(self.bootstrap, self.topics.all())
            await limits.delete_groups(self.bootstrap, [group_id(self.prefix, s)
                                                        for s in ("ingest", "conversation")])
        except Exception as exc:  # cleanup only, but say so
            print(f"bench: Kafka cleanup failed: {exc}")
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(self.schema)))


#: the row eventsourcing's tracking recorder writes with the tables (not a position)
MIGRATION_ROW = "__migration__"


class Progress:
    """Polls the completion criterion of the module docstring."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> Progress:
        await self.consumer.start()
        await self.admin.start()
        self.conn = await psycopg.AsyncConnection.connect(self.world.database_url,
                                                          autocommit=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()
        if self.conn is not None:
            await self.conn.close()

    async def query(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of ``statement`` ({s} = the bench schema); [] while tables do not exist."""
        assert self.conn is not None
        try:
            cur = await self.conn.execute(SQL(statement).format(s=Identifier(self.world.schema)),
                                          args)
            return await cur.fetchall()
        except psycopg.errors.UndefinedTable:
            return []

    async def tracked(self, table: str = "notification_tracking") -> dict[str, int]:
        rows = await self.query("SELECT application_name, notification_id FROM {s}." + table)
        return {str(name): int(n) for name, n in rows if n is not None}

    async def ingest_done(self) -> bool:
        topic = self.world.topics.gateway
        if self.world.gateway_input:  # no ingest: conversation_done covers the topic
            return True
        ends = await limits.end_offsets(self.consumer, topic)
        done = await limits.group_offsets(self.admin, group_id(self.world.prefix, "ingest"),
                                          topic)
        return all(done.get(p, 0) >= end for p, end in ends.items())

    async def conversation_left(self) -> int:
        """Records of the conversation service's input the positions it tracks have not
        passed yet (0: done)."""
        topics = self.world.topics
        tracked = await self.tracked()
        left = 0
        for topic in ((topics.gateway, topics.commands) if self.world.gateway_input
                      else (topics.commands,)):
            ends = await limits.end_offsets(self.consumer, topic)
            left += sum(max(0, end - 1 - tracked.get(f"{topic}:{p}", -1))
                        for p, end in ends.items() if end > 0)
        return left

    async def conversation_done(self) -> bool:
        return await self.conversation_left() == 0

    async def max_notification_id(self) -> int:
        rows = await self.query("SELECT COALESCE(max(notification_id), 0) FROM "
                                "{s}.stored_events")
        return int(rows[0][0]) if rows else 0

    async def follower_done(self, name: str) -> bool:
        position = (await self.tracked("projection_tracking")).get(name, 0)
        return position >= await self.max_notification_id()

    async def all_done(self) -> bool:
        return (await self.ingest_done() and await self.conversation_done()
                and await self.follower_done(PROJECTION))

    async def relay_done(self) -> bool:
        return await self.follower_done(f"relay:{self.world.topics.events}")

    async def started(self) -> bool:
        """A first batch committed: a tracked position of a topic partition. The
        ``__migration__`` row eventsourcing writes when it creates the tables is not one."""
        return any(name != MIGRATION_ROW for name in await self.tracked())


#: how often the end of an e2e run is polled once the conversation service has at most
#: NEAR_END records (and at most a twentieth of the run's) left: the run's time is
#: measured to the poll that sees the projections done, so a coarse interval would add
#: up to itself to it
TAIL_INTERVAL = 0.02
NEAR_END = 50_000


def tail_interval(interval: float) -> float:
    """The end's poll interval for a run polled every ``interval`` seconds."""
    return min(interval, TAIL_INTERVAL)


def near_end(records: int) -> int:
    """How many records left to the conversation service count as the end of a run of
    ``records``: the last twentieth, at most :data:`NEAR_END` (a short run is not polled
    finely throughout)."""
    return min(NEAR_END, records // 20)


async def wait_for(world: World, probe: Any, timeout: float, interval: float, what: str,
                   *, finer: Callable[[], bool] | None = None) -> float:
    """Poll ``probe`` (checking every service is alive); returns the perf_counter when true.

    ``finer``: once it returns true, poll every :func:`tail_interval` instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        world.check()
        if await probe():
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(tail_interval(interval) if finer is not None and finer()
                            else interval)


#: ``run_e2e`` layouts: every service its own ``serve --services X`` process, or one
#: ``bonychat serve`` (default services) as a user's first run
LAYOUTS = ("services", "serve")


def start_services(world: World, conversation_copies: int = 1,
                   layout: str = "services") -> dict[str, int]:
    """Ingest, conversation (x copies), relay and projections, each its own process;
    or one ``bonychat serve`` (``layout="serve"``)."""
    if layout == "serve":
        return {"serve": world.serve(None, "serve").pid}
    pids = {} if world.gateway_input else {"ingest": world.serve("ingest", "ingest").pid}
    for n in range(conversation_copies):
        name = "conversation" if conversation_copies == 1 else f"conversation-{n + 1}"
        pids[name] = world.serve("conversation", name).pid
    pids["relay"] = world.serve("relay", "relay").pid
    pids["projections"] = world.serve("projections", "projections").pid
    return pids


async def run_e2e(world: World, records: Sequence[limits.Record], expected: Expected, *,
                  copies: int = 1, concurrent: bool = False, interval: float = 0.25,
                  timeout: float = 1800, layout: str = "services") -> dict[str, Any]:
    """Start the services (and, if ``concurrent``, the publisher) and time until done.

    Without ``concurrent`` the records must already be on the gateway topic.
    The services are left running (caught up, relay included) for the caller.
    """
    async with Progress(world) as progress:
        started = time.perf_counter()
        pids = start_services(world, copies, layout)
        publisher = (asyncio.create_task(limits.publish(world.bootstrap, world.topics.gateway,
                                                        records)) if concurrent else None)
        first: float | None = None
        upstream: float | None = None  # the conversation service done (the tail after it)
        nearly = near_end(expected.lines)
        finer = False  # ``nearly`` records or fewer left for the conversation service

        async def probe() -> bool:
            nonlocal first, upstream, finer
            if publisher is not None and publisher.done():
                publisher.result()  # raise a publishing failure now
            if first is None and await progress.started():
                first = time.perf_counter()
            if publisher is not None and not publisher.done():
                return False
            if upstream is None:
                if not await progress.ingest_done():
                    return False
                left = await progress.conversation_left()
                finer = left <= nearly
                if left:
                    return False
                upstream = time.perf_counter()
            # ingest and the conversation service are done for good (positions only
            # advance): what is left of all_done is the projections' position
            return await progress.follower_done(PROJECTION)

        ready = {p.name: p.ready for p in world.processes}
        # one serve: its worker processes (if any) each from their own listener up
        worker_ready = world.processes[0].worker_ready if layout == "serve" else None
        with CpuSampler(pids, ready=ready, worker_ready=worker_ready) as cpu:
            done = await wait_for(world, probe, timeout, interval, "the projections",
                                  finer=lambda: finer)
            relay = await wait_for(world, progress.relay_done, 300, interval, "the relay")
        batches = {p.name: p.batches() for p in world.processes}
        counts = await progress.query(
            "SELECT (SELECT count(*) FROM {s}.processed_events), "
            "(SELECT count(*) FROM {s}.dead_letters), (SELECT count(*) FROM {s}.stored_events), "
            "(SELECT avg(octet_length(state)) FROM {s}.stored_events)")
        dlq = sum((await limits.end_offsets(progress.consumer, world.topics.dlq)).values())
    outcomes, dead, stored, state_bytes = counts[0]
    if outcomes != expected.outcomes or dead != 0 or dlq < expected.invalid:
        raise RuntimeError(f"e2e result wrong: {outcomes} outcomes (expected "
                           f"{expected.outcomes}), {dead} dead letters in PostgreSQL "
                           f"(expected 0), {dlq} DLQ records (expected >= {expected.invalid})")
    seconds = done - started
    return {
        "events": expected.lines, "partitions": world.partitions, "conversation_copies": copies,
        "layout": layout,
        "publish_concurrent": concurrent, "seconds": round(seconds, 2),
        "events_per_s": round(expected.lines / seconds),
        "first_stored_s": round(first - started, 2) if first else None,
        "events_per_s_after_first_stored": (round(expected.lines / (done - first))
                                            if first and done > first else None),
        "conversation_done_s": round(upstream - started, 2) if upstream else None,
        "projections_tail_s": round(done - upstream, 2) if upstream else None,
        "relay_caught_up_s": round(relay - started, 2), "poll_interval_s": interval,
        "tail_poll_interval_s": tail_interval(interval),
        "outcomes": outcomes, "dlq_records": dlq, "stored_events": stored,
        "avg_state_bytes": round(float(state_bytes or 0)), "cpu_cores": cpu.summary(),
        "service_batches": batches, "cpu_us_per_event": cpu.us_per_event(expected.lines),
        "postgres_us_per_event_by_client": {  # whom PostgreSQL's CPU served (bench.procs)
            k: round(v * 1e6 / max(expected.lines, 1), 1)
            for k, v in cpu.postgres_by_client().items()},
        "cpu_window": "each service (and worker process) from its listener up (start-up excluded) "
                      "until the relay caught up; kafka and postgres are shared with other users",
    }
