"""After a fault run: compare what the Kafka runtime stored with ``bonychat import``.

The reference is the same input (every line the publishers handed over)
imported by the ``bonychat`` command into a fresh embedded (SQLite) store.
Equal conversations and metrics per workspace, equal outcome rows, equal
numbers of stored domain events; and every stored domain event at least once
on ``bonychat.conversation.events.v1``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer

from services.composition import open_stores
from services.settings import Settings
from tests.integration.kafka_fixtures import snapshot

BONYCHAT = Path(sys.executable).parent / "bonychat"
Outcome = tuple[str, str, str, str | None]  # workspace, event id, outcome, reason
Digest = dict[str, tuple[int, int]]  # workspace -> (outcome rows, sum of their hashes)
_OUTCOMES = "SELECT workspace_id, event_id, outcome, reason FROM {}processed_events"


def h64(*parts: object) -> int:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def digest(rows: Iterable[tuple[Any, ...]]) -> tuple[Digest, Counter[str]]:
    """Per workspace: how many outcome rows and an order-free hash of them; outcome counts."""
    sums: dict[str, list[int]] = {}
    kinds: Counter[str] = Counter()
    for ws, eid, outcome, reason in rows:
        entry = sums.setdefault(ws, [0, 0])
        entry[0] += 1
        entry[1] = (entry[1] + h64(eid, outcome, reason)) % 2**64
        kinds[outcome] += 1
    return {ws: (n, total) for ws, (n, total) in sums.items()}, kinds


class Reference:
    """``bonychat import`` of the run's input into a fresh SQLite file, kept until closed."""

    def __init__(self, inputs: list[Path]) -> None:
        self._folder = tempfile.TemporaryDirectory()
        folder = Path(self._folder.name)
        source = folder / "input.jsonl"
        with open(source, "wb") as out:
            for path in inputs:
                out.write(path.read_bytes())
        self.db = folder / "reference.db"
        subprocess.run([str(BONYCHAT), "import", str(source), "--database-url", str(self.db),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL,
                       env={k: v for k, v in os.environ.items()
                            if not k.startswith("BONYCHAT_")})
        self.stores = open_stores(Settings(database_url=str(self.db)))
        self.events = self.stores.events.max_notification_id()
        with sqlite3.connect(self.db) as conn:
            self.outcomes, self.kinds = digest(conn.execute(_OUTCOMES.format("")))
            self.workspaces = sorted({ws for (ws,) in conn.execute(
                "SELECT DISTINCT workspace_id FROM conversations")} | set(self.outcomes))

    def rows(self, ws: str) -> set[Outcome]:
        with sqlite3.connect(self.db) as conn:
            return set(conn.execute(_OUTCOMES.format("") + " WHERE workspace_id = ?", (ws,)))

    def close(self) -> None:
        self.stores.close()
        self._folder.cleanup()


@dataclass
class Observed:
    outcomes: Digest
    kinds: Counter[str]
    event_ids: set[int]  # h64 of every stored event id
    stored: int
    projected: int
    relayed: int


def observe(url: str, schema: str, relay_name: str) -> Observed:
    ids: set[int] = set()
    stored = 0
    with psycopg.connect(url, autocommit=True) as conn:
        outcomes, kinds = digest(conn.execute(_OUTCOMES.format(f'"{schema}".')))
        with conn.transaction(), conn.cursor(name="events") as cur:  # a server-side cursor
            cur.itersize = 20_000
            cur.execute(f'SELECT state FROM "{schema}".stored_events')
            for (state,) in cur:
                ids.add(h64(orjson.loads(bytes(state))["event_id"]))
                stored += 1
        tracked = dict(conn.execute(
            f'SELECT application_name, notification_id FROM "{schema}".projection_tracking'
        ).fetchall())
    return Observed(outcomes, kinds, ids, stored,
                    int(tracked.get("projection:conversations", 0) or 0),
                    int(tracked.get(relay_name, 0) or 0))


def settled(url: str, schema: str, relay_name: str, expected: Reference) -> tuple[bool, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT (SELECT count(*) FROM "{schema}".processed_events), '
            f'(SELECT coalesce(max(notification_id), 0) FROM "{schema}".stored_events)'
        ).fetchone()
        tracked = dict(conn.execute(
            f'SELECT application_name, notification_id FROM "{schema}".projection_tracking'
        ).fetchall())
    assert row is not None
    outcomes, newest = int(row[0]), int(row[1])
    done = (outcomes >= sum(n for n, _ in expected.outcomes.values())
            and int(tracked.get("projection:conversations", 0) or 0) >= newest
            and int(tracked.get(relay_name, 0) or 0) >= newest)
    return done, outcomes


def wait_settled(url: str, schema: str, relay_name: str, expected: Reference,
                 timeout: float = 600) -> None:
    """Wait until every outcome is stored and projections and relay are at the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if settled(url, schema, relay_name, expected)[0]:
            return
        time.sleep(1)


async def _topic_ids(bootstrap: str, topic: str, idle_ms: int) -> tuple[int, set[int]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    records, ids = 0, set()
    try:
        while batches := await consumer.getmany(timeout_ms=idle_ms, max_records=10_000):
            for batch in batches.values():
                for record in batch:
                    records += 1
                    ids.add(h64(dict(record.headers).get("event_id", b"").decode()))
    finally:
        await consumer.stop()
    return records, ids


@dataclass
class Verdict:
    lost: int
    duplicated: int
    stored_events: int
    expected_events: int
    outcome_counts: dict[str, int]
    expected_outcome_counts: dict[str, int]
    workspaces: int
    workspaces_differing: list[str]
    topic_records: int
    topic_unique_ids: int
    topic_missing: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and not self.workspaces_differing
                and self.topic_missing == 0 and self.stored_events == self.expected_events
                and self.outcome_counts == self.expected_outcome_counts)


def verify(expected: Reference, *, url: str, schema: str, bootstrap: str, events_topic: str,
           relay_name: str) -> Verdict:
    """Compare, one workspace at a time (memory stays small on long runs)."""
    from services.composition.postgres import open_postgres_stores

    seen = observe(url, schema, relay_name)
    stores = open_postgres_stores(f"{url}?schema={schema}")
    differing: list[str] = []
    missing: set[Outcome] = set()
    extra: set[Outcome] = set()
    try:
        for ws in expected.workspaces:
            if (snapshot(stores.read_models, [ws])
                    != snapshot(expected.stores.read_models, [ws])):
                differing.append(ws)
            if seen.outcomes.get(ws) != expected.outcomes.get(ws):
                with psycopg.connect(url, autocommit=True) as conn:
                    got = set(conn.execute(_OUTCOMES.format(f'"{schema}".')
                                           + " WHERE workspace_id = %s", (ws,)))
                want = expected.rows(ws)
                missing |= want - got
                extra |= got - want
        unknown = set(seen.outcomes) - set(expected.outcomes)  # workspaces nobody sent
        for ws in unknown:
            extra.add((ws, "*", f"{seen.outcomes[ws][0]} rows", None))
    finally:
        stores.close()
    records, topic_ids = asyncio.run(_topic_ids(bootstrap, events_topic, 3_000))
    return Verdict(
        lost=len(missing) + max(0, expected.events - seen.stored),
        duplicated=len(extra) + max(0, seen.stored - expected.events)
        + (seen.stored - len(seen.event_ids)),
        stored_events=seen.stored, expected_events=expected.events,
        outcome_counts=dict(seen.kinds), expected_outcome_counts=dict(expected.kinds),
        workspaces=len(expected.workspaces), workspaces_differing=differing,
        topic_records=records, topic_unique_ids=len(topic_ids),
        topic_missing=len(seen.event_ids - topic_ids),
        details={"missing_outcomes": sorted(map(str, missing))[:10],
                 "extra_outcomes": sorted(map(str, extra))[:10]})
