"""Micro-benchmark of the projections' page: decoding, ``_project`` and the PostgreSQL write.

    python -m bench.followers --events 60000 --page 6000 --rounds 3 [--no-db]

Generated gateway lines (``bench.generate``, ten events per contact) are decided by the
unit of work into stored events (in memory), then projected page by page as the
projections service does (``ConversationProjection.apply_read``), three ways: decoding
alone (``stored_item``), ``_project`` alone (rows loaded from an in-memory store), and the
whole page into a fresh PostgreSQL schema (``BONYCHAT_DATABASE_URL``): client CPU of this
process and on-CPU time of the pool's backends (``/proc/PID/schedstat``, so PostgreSQL
must run on this machine), per stored event. Best of ``--rounds``; prints one JSON line.
docs/runtime.md, "The followers again".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from typing import Any

import orjson
import psycopg

from bench.generate import Generator
from bench.pg_write import backend_ns, fresh_stores
from services.conversation.application.ports import Position
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import parse
from services.projections.application.projector import EVENT_STORE_POSITION, ConversationProjection
from services.projections.domain.rows import stored_item
from tests.fakes import FakeEventStore, FakeReadModelStore


def stored_events(events: int) -> list[bytes]:
    """The stored JSON of ``events`` generated gateway events, decided in batches of 2,000."""
    store = FakeEventStore()
    uow = BatchUnitOfWork(store)
    items = []
    for envelope in Generator(events=events, contacts=max(1, events // 10)):
        text = envelope if isinstance(envelope, str) else orjson.dumps(envelope).decode()
        try:
            items.append(parse(text))
        except ValueError:
            continue  # an invalid line: a dead letter, not a stored event
    for start in range(0, len(items), 2_000):
        uow.process(items[start:start + 2_000])
    return [state for _, _, _, state in store.notifications]


def python_only(states: list[bytes], page: int) -> dict[str, float]:
    """CPU µs per event of decoding and of ``_project`` (rows kept in memory)."""
    store = FakeReadModelStore()
    projection = ConversationProjection(store)
    decode = project = 0.0
    gc.collect()
    for start in range(0, len(states), page):
        t0 = time.process_time()
        items = [stored_item(state) for state in states[start:start + page]]
        t1 = time.process_time()
        changed = projection._project(items, store.load_rows)
        t2 = time.process_time()
        decode, project = decode + t1 - t0, project + t2 - t1
        store.save(changed, Position(EVENT_STORE_POSITION, start + 1))
        projection._remember(changed)
    return {"decode": decode / len(states) * 1e6, "project": project / len(states) * 1e6}


def with_postgres(base: str, states: list[bytes], page: int) -> dict[str, float]:
    """Client and backend CPU µs per event of ``apply_read`` into a fresh schema."""
    name = f"bench_pgw_{os.getpid()}"
    with fresh_stores(base, name, "off") as stores, \
            psycopg.connect(base, autocommit=True) as admin:
        projection = ConversationProjection(stores.read_models)
        pages = [list(enumerate(states[start:start + page], start + 1))
                 for start in range(0, len(states), page)]
        client = server = 0
        gc.collect()
        for rows in pages:
            backends = [int(r[0]) for r in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,))]
            s0, c0 = backend_ns(backends), time.process_time_ns()
            projection.apply_read(rows, Position(EVENT_STORE_POSITION, rows[-1][0]))
            c1, s1 = time.process_time_ns(), backend_ns(backends)
            client, server = client + c1 - c0, server + s1 - s0
    per = len(states) * 1_000
    return {"client": client / per, "backend": server / per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--page", type=int, default=6_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-db", action="store_true", help="the Python stages only")
    args = parser.parse_args(argv)
    states = stored_events(args.events)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        found: dict[str, Any] = python_only(states, args.page)
        if not args.no_db:
            found |= with_postgres(os.environ["BONYCHAT_DATABASE_URL"], states, args.page)
        for key, value in found.items():
            best[key] = min(best.get(key, value), value)
    print(json.dumps({"stored_events": len(states), "page": args.page,
                      "best_us_per_event": {k: round(v, 2) for k, v in best.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
