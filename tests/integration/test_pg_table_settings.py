"""Storage settings of the event store's insert-only tables (``pg_sql.TABLE_SETTINGS``).

The events table and the outcome log are only ever inserted into; they get a fixed
autovacuum insert threshold instead of PostgreSQL's 20 % of the table
(docs/runtime.md, "PostgreSQL settings"). A schema made by a version before these
settings gets them when it is next opened, and keeps its data.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from services.composition.postgres import open_postgres_stores, parse_url
from services.conversation.adapters.pg_recorder import EVENTS_TABLE
from services.conversation.adapters.pg_sql import INSERT_ONLY_AUTOVACUUM, RELOPTIONS
from services.conversation.domain.contact import aggregate_id
from tests.store_contract import opened, outcome

pytestmark = pytest.mark.integration

TABLES = (EVENTS_TABLE, "processed_events")


def ours(postgres_url: str) -> dict[str, list[str]]:
    """Of each table's storage options, those ``TABLE_SETTINGS`` sets (eventsourcing
    gives the events table autovacuum options of its own, kept as they are)."""
    names = tuple(f"{name}=" for name, _ in INSERT_ONLY_AUTOVACUUM)
    return {table: [o for o in options if o.startswith(names)]
            for table, options in reloptions(postgres_url).items()}


def reloptions(postgres_url: str) -> dict[str, list[str]]:
    target = parse_url(postgres_url)
    with psycopg.connect(**target.params, autocommit=True) as conn:
        rows: list[tuple[Any, ...]] = conn.execute(
            "SELECT c.relname, coalesce(c.reloptions, '{}') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s)",
            (target.schema, list(TABLES))).fetchall()
    return {str(name): sorted(options) for name, options in rows}


def reset(postgres_url: str) -> None:
    """Leave the tables as a version before the settings made them."""
    target = parse_url(postgres_url)
    names = ", ".join(name for name, _ in INSERT_ONLY_AUTOVACUUM)
    with psycopg.connect(**target.params, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f'ALTER TABLE "{target.schema}".{table} RESET ({names})')


def test_a_new_schema_has_the_insert_only_autovacuum_settings(postgres_url: str) -> None:
    stores = open_postgres_stores(postgres_url)
    stores.close()
    assert ours(postgres_url) == {table: sorted(RELOPTIONS) for table in TABLES}
    assert "autovacuum_vacuum_insert_threshold=100000" in RELOPTIONS
    # eventsourcing's own options on the events table are still there
    assert "autovacuum_analyze_scale_factor=0.01" in reloptions(postgres_url)[EVENTS_TABLE]


@pytest.mark.parametrize("create", [True, False])
def test_an_older_schema_gets_them_when_opened_and_keeps_its_data(
        postgres_url: str, create: bool) -> None:
    first = open_postgres_stores(postgres_url)
    first.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [], None)
    first.close()
    reset(postgres_url)
    assert ours(postgres_url) == {table: [] for table in TABLES}

    again = open_postgres_stores(postgres_url, create=create)
    try:
        assert ours(postgres_url) == {table: sorted(RELOPTIONS) for table in TABLES}
        assert [e.aggregate_version for e in again.events.load(aggregate_id("ws1", "c1"))] == [1]
        assert again.events.seen({("ws1", "e1"), ("ws1", "e2")}) == {("ws1", "e1")}
        again.events.commit([opened("c2", 1, "k2")], [outcome("e2")], [], None)
        assert again.events.seen({("ws1", "e2")}) == {("ws1", "e2")}
    finally:
        again.close()
    third = open_postgres_stores(postgres_url)  # a schema that has them: nothing to change
    try:
        assert third.events.recorder.set_table_settings() == []  # type: ignore[attr-defined]
    finally:
        third.close()


def test_a_role_that_does_not_own_the_tables_opens_them_as_they_are(postgres_url: str) -> None:
    """The settings only tune autovacuum: a role that may use the tables but does not
    own them (so may not ALTER them) opens an older schema all the same."""
    first = open_postgres_stores(postgres_url)
    first.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [], None)
    first.close()
    reset(postgres_url)
    target = parse_url(postgres_url)
    role = f"{target.schema}_user"
    with psycopg.connect(**target.params, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
        conn.execute(f'GRANT USAGE, CREATE ON SCHEMA "{target.schema}" TO "{role}"')
        conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA "{target.schema}" TO "{role}"')
        conn.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{target.schema}" TO "{role}"')
    try:
        parts = urlsplit(postgres_url)
        url = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
        stores = open_postgres_stores(url)
        try:
            assert stores.events.recorder.set_table_settings() == []  # type: ignore[attr-defined]
            assert [e.aggregate_version
                    for e in stores.events.load(aggregate_id("ws1", "c1"))] == [1]
        finally:
            stores.close()
        assert ours(postgres_url) == {table: [] for table in TABLES}
    finally:
        with psycopg.connect(**target.params, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_a_table_locked_by_a_long_vacuum_is_left_for_the_next_start(postgres_url: str) -> None:
    """``ALTER TABLE … SET`` needs the lock a VACUUM holds (an anti-wraparound one is
    not cancelled for it): opening the store skips that table after the lock timeout
    instead of waiting for the VACUUM, and the next open gives it its settings."""
    first = open_postgres_stores(postgres_url)
    first.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [], None)
    first.close()
    reset(postgres_url)
    target = parse_url(postgres_url)
    done: list[Any] = []
    with psycopg.connect(**target.params) as vacuum:  # holds the lock until it closes
        vacuum.execute(f'LOCK TABLE "{target.schema}".processed_events '
                       "IN SHARE UPDATE EXCLUSIVE MODE")

        def open_and_use() -> None:
            stores = open_postgres_stores(postgres_url)
            try:
                done.append(stores.events.seen({("ws1", "e1")}))
            finally:
                stores.close()

        opener = threading.Thread(target=open_and_use, daemon=True)
        opener.start()
        opener.join(60)  # a liveness bound, not a speed check: without the timeout it waits
        assert not opener.is_alive(), "opening the store waited for the VACUUM's lock"
        assert done == [{("ws1", "e1")}]
        assert ours(postgres_url) == {EVENTS_TABLE: sorted(RELOPTIONS), "processed_events": []}
    again = open_postgres_stores(postgres_url)  # the lock is gone: now it gets them
    again.close()
    assert ours(postgres_url) == {table: sorted(RELOPTIONS) for table in TABLES}
