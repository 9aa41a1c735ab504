"""After a fault run: compare what the Kafka runtime stored with ``bonychat import``.

The reference is the same input (every line the publishers handed over)
imported by the ``bonychat`` command into a fresh embedded (SQLite) store.
Equal conversations and metrics per workspace, equal outcome rows, equal
numbers of stored domain events; and every stored domain event at least once
on ``bonychat.conversation.events.v1``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from services.bootstrap import open_stores
from services.settings import Settings
from tests.integration.kafka_fixtures import read_topic, snapshot

BONYCHAT = Path(sys.executable).parent / "bonychat"
Outcome = tuple[str, str, str, str | None]  # workspace, event id, outcome, reason


@dataclass
class Expected:
    snapshot: dict[str, Any]
    outcomes: set[Outcome]
    events: int
    workspaces: list[str]


def workspaces_of(lines: list[bytes]) -> list[str]:
    found: set[str] = set()
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("workspace_id"), str):
            found.add(value["workspace_id"])
    return sorted(found)


def reference(lines: list[bytes]) -> Expected:
    """``bonychat import`` of ``lines`` into a fresh SQLite file, read back."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "input.jsonl"
        source.write_bytes(b"".join(line + b"\n" for line in lines))
        db = Path(folder) / "reference.db"
        subprocess.run([str(BONYCHAT), "import", str(source), "--database-url", str(db),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL,
                       env={k: v for k, v in os.environ.items()
                            if not k.startswith("BONYCHAT_")})
        workspaces = workspaces_of(lines)
        stores = open_stores(Settings(database_url=str(db)))
        try:
            snap = snapshot(stores.read_models, workspaces)
            events = stores.events.max_notification_id()
        finally:
            stores.close()
        with sqlite3.connect(db) as conn:
            outcomes = {(ws, eid, outcome, reason) for ws, eid, outcome, reason in conn.execute(
                "SELECT workspace_id, event_id, outcome, reason FROM processed_events")}
    return Expected(snap, outcomes, events, workspaces)


@dataclass
class Observed:
    outcomes: set[Outcome]
    event_ids: list[str]
    projected: int
    relayed: int


def observe(url: str, schema: str, relay_name: str) -> Observed:
    with psycopg.connect(url, autocommit=True) as conn:
        outcomes = {(ws, eid, outcome, reason) for ws, eid, outcome, reason in conn.execute(
            f'SELECT workspace_id, event_id, outcome, reason FROM "{schema}".processed_events')}
        ids = [json.loads(bytes(state))["event_id"] for (state,) in conn.execute(
            f'SELECT state FROM "{schema}".stored_events ORDER BY notification_id')]
        tracked = dict(conn.execute(
            f'SELECT application_name, notification_id FROM "{schema}".projection_tracking'
        ).fetchall())
    return Observed(outcomes, ids, int(tracked.get("projection:conversations", 0) or 0),
                    int(tracked.get(relay_name, 0) or 0))


def wait_settled(url: str, schema: str, relay_name: str, expected: Expected,
                 timeout: float = 300) -> Observed:
    """Wait until every outcome is stored and projections and relay are at the end."""
    deadline = time.monotonic() + timeout
    while True:
        seen = observe(url, schema, relay_name)
        done = (len(seen.outcomes) >= len(expected.outcomes)
                and seen.projected >= len(seen.event_ids) and seen.relayed >= len(seen.event_ids))
        if done or time.monotonic() > deadline:
            return seen
        time.sleep(1)


@dataclass
class Verdict:
    lost: int
    duplicated: int
    stored_events: int
    expected_events: int
    outcome_counts: dict[str, int]
    expected_outcome_counts: dict[str, int]
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


def verify(expected: Expected, seen: Observed, *, url: str, schema: str, bootstrap: str,
           events_topic: str) -> Verdict:
    from services.postgres import open_postgres_stores

    stores = open_postgres_stores(f"{url}?schema={schema}")
    try:
        got = snapshot(stores.read_models, expected.workspaces)
    finally:
        stores.close()
    differing = [ws for ws in expected.workspaces if got.get(ws) != expected.snapshot.get(ws)]
    missing = expected.outcomes - seen.outcomes
    extra = seen.outcomes - expected.outcomes
    stored = len(seen.event_ids)
    repeated_ids = sum(n - 1 for n in Counter(seen.event_ids).values() if n > 1)
    records = read_topic(bootstrap, events_topic, idle_ms=3_000)
    ids = [r.headers.get("event_id") for r in records]
    unique = set(ids)
    topic_missing = len(set(seen.event_ids) - unique)
    return Verdict(
        lost=len(missing) + max(0, expected.events - stored),
        duplicated=len(extra) + max(0, stored - expected.events) + repeated_ids,
        stored_events=stored, expected_events=expected.events,
        outcome_counts=dict(Counter(o[2] for o in seen.outcomes)),
        expected_outcome_counts=dict(Counter(o[2] for o in expected.outcomes)),
        workspaces_differing=differing, topic_records=len(records),
        topic_unique_ids=len(unique), topic_missing=topic_missing,
        details={"missing_outcomes": sorted(map(str, missing))[:10],
                 "extra_outcomes": sorted(map(str, extra))[:10]})
