"""The per-batch statements that join a batch's keys to a table find them by the table's
primary key whatever the table's size: a join of JSON or array input (which PostgreSQL
estimates at 100 or 10 rows, whatever its length) to a table of a few tens of thousands
of rows was planned as a hash join over the whole table, once per batch.

Each statement is planned as the services run it, prepared (a generic plan), on a
fresh schema whose table holds 20,000 rows and has not been analysed yet (a new
database at low load), and its plan must not scan the table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from services.composition import Stores
from services.composition.postgres import open_postgres_stores
from services.conversation.adapters.store_postgres import PostgresEventStore
from services.conversation.application.ports import Position
from services.projections.adapters.store_postgres import PostgresReadModelStore
from services.projections.application.projector import EVENT_STORE_POSITION
from tests.integration.conftest import libpq_url

pytestmark = pytest.mark.integration
ROWS = 20_000


@pytest.fixture
def stores(postgres_url: str) -> Iterator[Stores]:
    opened = open_postgres_stores(postgres_url)
    yield opened
    opened.close()


def generic_plan(conn: psycopg.Connection[tuple[object, ...]], statement: str,
                 types: list[str], args: list[str]) -> str:
    """The generic plan of ``statement`` (placeholders in order) for ``args`` (SQL text)."""
    numbers = iter(range(1, len(types) + 1))
    statement = re.sub(r"%[bs]", lambda _: f"${next(numbers)}", statement)
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE probe({', '.join(types)}) AS {statement}")
    rows = conn.execute(f"EXPLAIN EXECUTE probe({', '.join(args)})").fetchall()
    return "\n".join(str(row[0]) for row in rows)


def test_the_seen_check_probes_the_outcome_key_per_key(stores: Stores,
                                                       postgres_url: str) -> None:
    store = stores.events
    assert isinstance(store, PostgresEventStore)
    schema = store.datastore.schema
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as conn:
        conn.execute(sql.SQL(
            "INSERT INTO {}.processed_events SELECT 'ws' || (i %% 5), md5(i::text), 'c', "
            "'MessageReceived', now(), 'accepted', NULL FROM generate_series(1, %s) i"
        ).format(sql.Identifier(schema)), (ROWS,))
        statement = store._seen_json.as_string(conn)
        plan = generic_plan(conn, statement, ["json"],
                            ["""'[["ws1", "a"], ["ws2", "b"]]'"""])
    assert "processed_events_pkey" in plan, plan
    assert "Seq Scan on processed_events" not in plan, plan
    assert store.seen({("ws1", md5(1)), ("ws1", "absent")}) == {("ws1", md5(1))}


def test_the_stored_rows_read_keeps_probing_the_key_as_the_table_grows(
        stores: Stores, postgres_url: str) -> None:
    """A prepared statement's generic plan is kept until the table is analysed: planned
    while the table held 20 rows, ``= ANY`` kept scanning it whole once it held 20,000.
    The page's read of its stored rows probes the key per id, as the seen check does."""
    rm = stores.read_models
    assert isinstance(rm, PostgresReadModelStore)
    schema = sql.Identifier(rm.datastore.schema)
    fill = sql.SQL(
        "INSERT INTO {}.conversations (conversation_id, workspace_id, contact_id, "
        "opened_us, opened_by, messages_received, messages_sent) SELECT md5(i::text), "
        "'ws' || (i %% 5), 'c' || i, i, 'contact', 1, 0 "
        "FROM generate_series(%s::int, %s::int) i").format(schema)
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as conn:
        conn.execute(fill, (1, 20))
        moments = generic_plan(conn, rm._stored_moments.as_string(conn), ["text[]"],
                               ["'{a,b}'"])
        for _ in range(6):  # custom plans first, then the generic one is kept
            conn.execute("EXECUTE probe('{a,b}')")
        conn.execute(fill, (21, ROWS))
        grown = "\n".join(str(row[0]) for row in conn.execute(
            "EXPLAIN EXECUTE probe('{a,b}')").fetchall())
    assert "conversations_pkey" in moments, moments
    assert "Seq Scan on conversations" not in grown, grown
    rm.save([], Position(EVENT_STORE_POSITION, 1))
    stored = rm.load_rows({md5(1), md5(2)})
    assert sorted(stored) == sorted([md5(1), md5(2)])


def md5(n: int) -> str:
    return hashlib.md5(str(n).encode()).hexdigest()
