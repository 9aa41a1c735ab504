"""Micro-benchmark of the conversation service's PostgreSQL write: INSERT … unnest vs COPY.

    python -m bench.pg_write --events 20000 --batches 1,8,32,128,1000 [--synchronous-commit on]

Generated gateway lines (``bench.generate``) are decided by the unit of work as the
Kafka service decides them (position with ``after``, the version check of what a
batch only read) and written with ``PostgresEventStore.commit``; only the write is
measured. For each write path (``insert``: every table by ``INSERT … unnest`` in one
pipeline; ``copy``: outcomes and events by binary ``COPY``) and batch size, on a
fresh schema: client CPU (this process), server CPU (the pool's backends, on-CPU
time from ``/proc/PID/schedstat``, so PostgreSQL must run on this machine) and wall
time, per event stored, plus the outcomes and events per batch. Writes
``bench/results/pg-write-<timestamp>.json`` and prints one JSON line.

``--paths projections`` times the projections service's write instead
(``PostgresReadModelStore.save``), per batch of conversation rows.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from bench.generate import Generator
from bench.pages import write_result
from services.composition.postgres import open_postgres_stores
from services.conversation.application.ports import Position
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import parse
from services.projections.domain.rows import ConversationRow

PATHS = {"insert": 1 << 62, "copy": 1}  # copy_min_rows of each path


def backend_ns(pids: list[int]) -> int:
    """On-CPU nanoseconds of the processes ``pids`` (first field of schedstat)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


@contextmanager
def fresh_stores(base: str, name: str, synchronous_commit: str) -> Iterator[Any]:
    """Stores on a new schema of ``base`` (dropped afterwards), tagged ``name``."""
    schema = f"bench_pgw_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in base else "?"
    url = (f"{base}{sep}schema={schema}&application_name={name}"
           f"&options=-csynchronous_commit%3D{synchronous_commit}")
    stores = open_postgres_stores(url)
    try:
        yield stores
    finally:
        stores.close()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(base: str, lines: list[bytes], path: str, batch: int,
        synchronous_commit: str) -> dict[str, Any]:
    name = f"bench_pgw_{os.getpid()}"
    with fresh_stores(base, name, synchronous_commit) as stores:
        stores.events.recorder.copy_min_rows = PATHS[path]
        uow = BatchUnitOfWork(stores.events)
        with psycopg.connect(base, autocommit=True) as admin:
            def pids() -> list[int]:
                rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE "
                                     "application_name = %s", (name,)).fetchall()
                return [int(r[0]) for r in rows]
            client = server = wall = 0
            events = outcomes = batches = 0
            after = -1
            for start in range(0, len(lines), batch):
                chunk = [parse(raw) for raw in lines[start:start + batch]]
                decision = uow.decide(chunk, "kafka")
                position = Position("commands:0", start + len(chunk) - 1, after=after)
                backends = pids()
                s0, c0, w0 = backend_ns(backends), time.process_time_ns(), time.perf_counter_ns()
                result = uow.write(decision, position)
                w1, c1, s1 = time.perf_counter_ns(), time.process_time_ns(), backend_ns(backends)
                uow.settle(decision)
                after = position.offset
                client, server, wall = client + c1 - c0, server + s1 - s0, wall + w1 - w0
                events += len(result.events)
                outcomes += len(result.outcomes)
                batches += 1
    per = max(events, 1) * 1_000
    return {"path": path, "batch": batch, "batches": batches, "events": events,
            "outcomes": outcomes, "client_us_per_event": round(client / per, 2),
            "server_us_per_event": round(server / per, 2),
            "wall_us_per_event": round(wall / per, 2),
            "wall_ms_per_batch": round(wall / batches / 1e6, 3)}


def run_projections(base: str, batch: int, batches: int,
                    synchronous_commit: str) -> dict[str, Any]:
    """The projections' write (``save``: upsert, cell marks, notify, position) of
    ``batches`` batches of ``batch`` conversation rows (half new, half updated)."""
    name = f"bench_pgw_{os.getpid()}"
    now_us = int(time.time()) * 1_000_000
    with fresh_stores(base, name, synchronous_commit) as stores, \
            psycopg.connect(base, autocommit=True) as admin:
        store = stores.read_models
        client = server = wall = 0
        after = None
        for n in range(batches):
            rows = [ConversationRow(
                conversation_id=f"conv-{(n * batch + i) // 2}", workspace_id=f"ws{i % 3}",
                contact_id=f"c{(n * batch + i) // 2}", channel="whatsapp",
                opened_us=now_us - 86_400_000_000 + n * 1_000_000, opened_by="contact",
                messages_received=1 + i % 2, last_activity_us=now_us) for i in range(batch)]
            position = Position("projection:conversations", n + 1, after=after)
            backends = [int(r[0]) for r in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,))]
            s0, c0, w0 = backend_ns(backends), time.process_time_ns(), time.perf_counter_ns()
            store.save(rows, position)
            w1, c1, s1 = time.perf_counter_ns(), time.process_time_ns(), backend_ns(backends)
            client, server, wall = client + c1 - c0, server + s1 - s0, wall + w1 - w0
            after = position.offset
    per = batches * 1_000
    return {"path": "projections", "batch": batch, "batches": batches,
            "client_us_per_batch": round(client / per, 1),
            "server_us_per_batch": round(server / per, 1),
            "wall_ms_per_batch": round(wall / per / 1_000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batches", default="1,8,32,128,1000")
    parser.add_argument("--paths", default="insert,copy",
                        help="or 'projections': the projections' row write instead")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batches", type=int, default=400,
                        help="at most this many batches of each size")
    parser.add_argument("--synchronous-commit", default="off", choices=("on", "off"))
    parser.add_argument("--database-url", default=os.environ.get("BONYCHAT_DATABASE_URL", ""))
    args = parser.parse_args()
    if args.paths == "projections":
        for round_ in range(1, args.rounds + 1):
            for batch in (int(b) for b in args.batches.split(",")):
                row = run_projections(args.database_url, batch, args.max_batches,
                                      args.synchronous_commit)
                print(" ".join(f"{k}={v}" for k, v in {**row, "round": round_}.items()))
        return
    lines = [item.encode() if isinstance(item, str) else orjson.dumps(item)
             for item in Generator(events=args.events, contacts=max(args.events // 10, 1))]
    rows = []
    for round_ in range(1, args.rounds + 1):
        for batch in (int(b) for b in args.batches.split(",")):
            for path in args.paths.split(","):
                row = run(args.database_url, lines[:batch * args.max_batches], path, batch,
                          args.synchronous_commit)
                row["round"] = round_
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_result(f"pg-write-{stamp}.json", {
        "bench": "pg_write", "events": args.events, "at": stamp,
        "synchronous_commit": args.synchronous_commit,
        "loadavg": os.getloadavg(), "rows": rows})


if __name__ == "__main__":
    main()
