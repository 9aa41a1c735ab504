"""The event store's writers' lock (``pg_sql.LOCK_WRITERS``): commit order stays the
notification id order, and VACUUM / ANALYZE no longer hold a commit up.

The writers took ``LOCK TABLE … IN EXCLUSIVE MODE`` (as eventsourcing does), which
conflicts with the SHARE UPDATE EXCLUSIVE lock autovacuum takes: after a bulk load
the conversation service's commits waited behind the vacuum of the events table
until PostgreSQL cancelled it (deadlock_timeout, 1 s). Each test holds a lock in a
second session and looks at what a commit does meanwhile, through both write paths
(the commit function for small batches, ``COPY`` for large ones): it finishes, or
it waits for a lock (seen in ``pg_locks``), which the test then releases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from services.composition import Stores
from services.composition.postgres import open_postgres_stores, parse_url
from services.conversation.adapters.pg_recorder import EVENTS_TABLE, writers_lock_key
from tests.store_contract import opened, outcome

pytestmark = pytest.mark.integration

PATHS = {"commit function": 10_000, "copy": 1}  # copy_min_rows


@pytest.fixture(params=list(PATHS))
def stores(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[Stores]:
    found = open_postgres_stores(postgres_url)
    found.events.recorder.copy_min_rows = PATHS[request.param]  # type: ignore[attr-defined]
    found.events.commit([opened("c0", 1, "k0")], [outcome("e0")], [], None)  # tables exist
    yield found
    found.close()


def connect(postgres_url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(**parse_url(postgres_url).params, **kwargs)


@pytest.fixture
def holder(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A second session, in a transaction until the test commits it."""
    with connect(postgres_url) as conn:
        yield conn


@pytest.fixture
def watcher(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(postgres_url, autocommit=True) as conn:
        yield conn


def schema(stores: Stores) -> str:
    return str(stores.events.datastore.schema)  # type: ignore[attr-defined]


class Commit(threading.Thread):
    """One commit of a new conversation, in a thread of its own."""

    def __init__(self, stores: Stores, n: int) -> None:
        super().__init__(daemon=True)
        self.stores, self.n = stores, n
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.stores.events.commit([opened(f"c{self.n}", 1, f"k{self.n}")],
                                      [outcome(f"e{self.n}", f"c{self.n}")], [], None)
        except BaseException as exc:  # reported by the test
            self.error = exc


def finished_or_waiting(commit: Commit, watcher: psycopg.Connection[Any],
                        holder: psycopg.Connection[Any]) -> str:
    """"finished" once the commit is done, "waiting" once a session waits for a lock
    the holder has (``pg_blocking_pids``), whichever comes first."""
    while True:
        if not commit.is_alive():
            assert commit.error is None, commit.error
            return "finished"
        waiting = watcher.execute("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE %s = ANY(pg_blocking_pids(pid))",
                                  (holder.info.backend_pid,)).fetchone()
        if waiting and waiting[0]:
            return "waiting"
        time.sleep(0.005)


def assert_commit_waits_for_holder(stores: Stores, holder: psycopg.Connection[Any],
                                   watcher: psycopg.Connection[Any], n: int) -> None:
    """Commit ``e{n}`` while ``holder``'s transaction holds a lock: the commit waits
    until that transaction ends, then succeeds."""
    commit = Commit(stores, n)
    commit.start()
    try:
        assert finished_or_waiting(commit, watcher, holder) == "waiting"
        assert commit.is_alive()
    finally:
        holder.commit()
    commit.join()
    assert commit.error is None
    assert stores.events.seen({("ws1", f"e{n}")}) == {("ws1", f"e{n}")}


def test_a_commit_does_not_wait_for_vacuum_or_analyze(
        stores: Stores, holder: psycopg.Connection[Any],
        watcher: psycopg.Connection[Any]) -> None:
    """SHARE UPDATE EXCLUSIVE is the lock VACUUM and ANALYZE hold on the table."""
    holder.execute(sql.SQL("LOCK TABLE {}.{} IN SHARE UPDATE EXCLUSIVE MODE").format(
        sql.Identifier(schema(stores)), sql.Identifier(EVENTS_TABLE)))
    commit = Commit(stores, 1)
    commit.start()
    try:
        assert finished_or_waiting(commit, watcher, holder) == "finished"
    finally:
        holder.commit()
        commit.join()
    assert stores.events.seen({("ws1", "e1")}) == {("ws1", "e1")}


def test_writers_still_wait_for_each_other(
        stores: Stores, holder: psycopg.Connection[Any],
        watcher: psycopg.Connection[Any]) -> None:
    """Another writer of this version holds the writers' lock: the commit waits for
    its end, so notification ids still commit in order."""
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (writers_lock_key(schema(stores)),))
    assert_commit_waits_for_holder(stores, holder, watcher, 2)


def test_a_writer_of_the_older_version_still_excludes_this_one(
        stores: Stores, holder: psycopg.Connection[Any],
        watcher: psycopg.Connection[Any]) -> None:
    """A writer of the version before (``LOCK TABLE … IN EXCLUSIVE MODE``, during a
    rolling upgrade): the commit waits for it too."""
    holder.execute(sql.SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
        sql.Identifier(schema(stores)), sql.Identifier(EVENTS_TABLE)))
    assert_commit_waits_for_holder(stores, holder, watcher, 3)
