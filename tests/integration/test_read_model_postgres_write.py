"""How the PostgreSQL read model writes rows (``store_postgres``, ``save_postgres``): the
JSON upsert stores exactly what the ``unnest`` upsert stores, values JSON cannot carry go
the ``unnest`` way, and a message's update of a conversation writes no index entry (a HOT
update)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from services.composition import Stores
from services.composition.postgres import open_postgres_stores
from services.conversation.application.ports import Position
from services.projections.adapters import save_postgres, store_postgres
from services.projections.adapters.store_postgres import PostgresReadModelStore, rows_json
from services.projections.application.projector import EVENT_STORE_POSITION
from services.projections.domain.rows import ConversationRow
from tests.integration.conftest import libpq_url

pytestmark = pytest.mark.integration
US_MAX = 2**63 - 1
TEXTS = ["plain", 'quote " and \\ backslash', "emoji 🎉 ✓",
         "עברית", "\t\n\r controls \x01\x1f", "", "x" * 5_000]


@pytest.fixture
def stores(postgres_url: str) -> Iterator[Stores]:
    opened = open_postgres_stores(postgres_url)
    yield opened
    opened.close()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page the statements' way (no page is small enough for the page function,
    ``test_projection_page_function.py``): the tests that look into those statements."""
    monkeypatch.setattr(save_postgres, "ONE_CALL_ROWS", 0)


def tricky_rows(prefix: str) -> list[ConversationRow]:
    rows = []
    for n, text in enumerate(TEXTS):
        rows.append(ConversationRow(
            conversation_id=f"{prefix}{n}", workspace_id=f"ws{n % 2}", contact_id=text or "c",
            channel=None if n % 3 else text, opened_us=-n if n % 2 else US_MAX - n,
            opened_by=text, closed_us=None if n % 2 else US_MAX, closed_by=text,
            closed_by_actor=None, assignee_id=text, team_id=None, category=text, summary=text,
            messages_received=2**31 - 1, messages_sent=n, first_message_us=-(2**63),
            first_response_us=None, first_responder_id=text, last_activity_us=US_MAX,
            recontact=bool(n % 2)))
    return rows


def test_the_json_upsert_stores_what_the_unnest_upsert_stores(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    rm = stores.read_models
    by_json = tricky_rows("j")
    assert rows_json([store_postgres._ROW_VALUES(r) for r in by_json]) is not None
    rm.save(by_json, Position(EVENT_STORE_POSITION, 1))
    monkeypatch.setattr(save_postgres, "rows_json", lambda values: None)  # the write's module
    by_arrays = tricky_rows("u")
    rm.save(by_arrays, Position(EVENT_STORE_POSITION, 2))
    stored = rm.load_rows({r.conversation_id for r in by_json + by_arrays})
    assert [stored[r.conversation_id] for r in by_json] == by_json
    assert [stored[r.conversation_id] for r in by_arrays] == by_arrays
    # and an update through each path (the upsert's conflict branch)
    monkeypatch.undo()
    for r in by_json:
        r.messages_sent += 1
        r.summary = None
    rm.save(by_json, Position(EVENT_STORE_POSITION, 3))
    assert rm.load_rows({r.conversation_id for r in by_json}) == {
        r.conversation_id: r for r in by_json}


def test_values_json_cannot_carry_are_stored_the_unnest_way(stores: Stores) -> None:
    nul = ConversationRow("n1", "ws1", "c1", "sms", 1, "contact", summary="bad\x00text")
    surrogate = ConversationRow("n2", "ws1", "c2", "sms", 1, "contact", category="\ud800")
    escaped = ConversationRow("n3", "ws1", "c3", "sms", 1, "contact", summary="\\u0000 ok")
    for row in (nul, surrogate, escaped):
        assert rows_json([store_postgres._ROW_VALUES(row)]) is None
    rm = stores.read_models
    rm.save([nul, escaped], Position(EVENT_STORE_POSITION, 1))
    assert rm.load_rows({"n1"})["n1"].summary == "bad\ufffdtext"  # as before: replaced
    assert rm.load_rows({"n3"})["n3"].summary == "\\u0000 ok"  # six characters, kept
    with pytest.raises(UnicodeEncodeError):  # as before: PostgreSQL text is UTF-8
        rm.save([surrogate], Position(EVENT_STORE_POSITION, 2))
    assert rm.position(EVENT_STORE_POSITION) == 1


def hot_counts(conn: psycopg.Connection[Any], schema: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT pg_stat_get_xact_tuples_updated(c.oid), "
        "pg_stat_get_xact_tuples_hot_updated(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'conversations'", (schema,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_message_updates_its_conversation_without_touching_an_index(
        stores: Stores, postgres_url: str) -> None:
    rm = stores.read_models
    assert isinstance(rm, PostgresReadModelStore)
    schema = rm.datastore.schema
    first = ConversationRow("h1", "ws1", "c1", "sms", 1_000, "contact")
    rm.save([first], Position(EVENT_STORE_POSITION, 1))
    with psycopg.connect(libpq_url(postgres_url)) as conn:  # one transaction
        for n in range(1, 4):  # messages: counters, first message, last activity
            message = ConversationRow("h1", "ws1", "c1", "sms", 1_000, "contact",
                                      messages_received=n, first_message_us=2_000,
                                      last_activity_us=2_000 + n)
            data = rows_json([store_postgres._ROW_VALUES(message)])
            conn.execute(rm._upsert_json, (data,))
        assert hot_counts(conn, schema) == (3, 3)
        closing = ConversationRow("h1", "ws1", "c1", "sms", 1_000, "contact", closed_us=9_000,
                                  closed_by="user", messages_received=3)
        conn.execute(rm._upsert_json, (rows_json([store_postgres._ROW_VALUES(closing)]),))
        assert hot_counts(conn, schema) == (4, 3)  # closing changes indexed columns
        conn.rollback()


def test_new_rows_are_inserted_not_upserted(
        stores: Stores, monkeypatch: pytest.MonkeyPatch, statements: None) -> None:
    """A page's rows not stored yet go in with a plain INSERT (the upsert's speculative
    insert costs a second WAL record per new row), the stored ones with the upsert."""
    rm = stores.read_models
    assert isinstance(rm, PostgresReadModelStore)
    first = tricky_rows("i")
    with monkeypatch.context() as patched:  # new rows only: the upsert is not run
        patched.setattr(rm, "_upsert_json",
                        psycopg.sql.SQL("SELECT 1/0 WHERE %s IS NOT NULL"))
        rm.save(first[:4], Position(EVENT_STORE_POSITION, 1))
    for r in first[:4]:  # stored ones change (the rest of the columns is fixed)
        r.messages_sent += 7
        r.closed_us, r.closed_by, r.summary = 5, "agent", None
    rm.save(first, Position(EVENT_STORE_POSITION, 2))  # 4 stored, the others new
    assert rm.load_rows({r.conversation_id for r in first}) == {
        r.conversation_id: r for r in first}
    assert rm.position(EVENT_STORE_POSITION) == 2


def test_a_row_stored_meanwhile_by_another_writer_is_upserted(
        stores: Stores, monkeypatch: pytest.MonkeyPatch, statements: None) -> None:
    """Should a row the page takes for new be stored by the time it is inserted (a writer
    under another position name), the key's violation rolls the page back and it is
    written again with the upsert: nothing lost, nothing twice, the position recorded."""
    rm = stores.read_models
    assert isinstance(rm, PostgresReadModelStore)
    stored = ConversationRow("m1", "ws1", "c1", "sms", 1_000, "contact")
    rm.save([stored], Position(EVENT_STORE_POSITION, 1))
    # the existence read answers as if m1 were not stored yet
    monkeypatch.setattr(rm, "_stored_moments", psycopg.sql.SQL("SELECT * FROM (")
                        + rm._stored_moments + psycopg.sql.SQL(") AS stored WHERE false"))
    later = ConversationRow("m1", "ws1", "c1", "sms", 1_000, "contact", messages_received=4,
                            last_activity_us=3_000)
    fresh = ConversationRow("m2", "ws1", "c2", "sms", 2_000, "contact")
    rm.save([later, fresh], Position(EVENT_STORE_POSITION, 2))
    assert rm.load_rows({"m1", "m2"}) == {"m1": later, "m2": fresh}
    assert rm.position(EVENT_STORE_POSITION) == 2


def test_rows_a_page_started_are_not_looked_up_and_a_wrong_hint_loses_nothing(
        stores: Stores, monkeypatch: pytest.MonkeyPatch, statements: None) -> None:
    """``save_snapshot(new=…)``: the rows the projection started in its page are not
    looked up before they are inserted (only the others are); one that is stored after
    all (a wrong hint) is upserted with every row looked up, nothing lost or twice."""
    rm = stores.read_models
    assert isinstance(rm, PostgresReadModelStore)
    schema = rm.datastore.schema
    with rm.datastore.transaction(commit=True) as curs:
        curs.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".probed (id text)')
        curs.execute(f'TRUNCATE "{schema}".probed')
    # the same lookup, every id it is given logged
    monkeypatch.setattr(rm, "_stored_moments", psycopg.sql.SQL(
        "WITH k AS (SELECT unnest(%s::text[]) AS id), "
        f'logged AS (INSERT INTO "{schema}".probed SELECT id FROM k) '
        "SELECT c.* FROM k CROSS JOIN LATERAL (SELECT conversation_id, workspace_id, "
        "opened_us, first_message_us, first_response_us, closed_us FROM "
        f'"{schema}".conversations WHERE conversation_id = k.id LIMIT 1) AS c'))

    def probed() -> list[str]:
        with rm.datastore.transaction(commit=True) as curs:
            curs.execute(f'SELECT id FROM "{schema}".probed ORDER BY id')
            found = [str(row["id"]) for row in curs.fetchall()]
            curs.execute(f'TRUNCATE "{schema}".probed')
        return found

    old = ConversationRow("h1", "ws1", "c1", "sms", 1_000, "contact")
    rm.save_snapshot(rm.snapshot([old]), Position(EVENT_STORE_POSITION, 1), new={"h1"})
    assert probed() == []
    old.messages_received, old.closed_us, old.closed_by = 3, 9_000, "agent"
    started = ConversationRow("h2", "ws1", "c2", "sms", 2_000, "contact")
    rm.save_snapshot(rm.snapshot([old, started]), Position(EVENT_STORE_POSITION, 2),
                     new={"h2"})
    assert probed() == ["h1"]
    again = ConversationRow("h2", "ws1", "c2", "sms", 2_000, "contact", messages_sent=5)
    third = ConversationRow("h3", "ws2", "c3", None, 3_000, "contact")
    rm.save_snapshot(rm.snapshot([again, third]), Position(EVENT_STORE_POSITION, 3),
                     new={"h2", "h3"})  # h2 is stored: the insert fails, then the upsert
    assert probed() == ["h2", "h3"]  # the second try looked every row up
    assert rm.load_rows({"h1", "h2", "h3"}) == {"h1": old, "h2": again, "h3": third}
    assert rm.position(EVENT_STORE_POSITION) == 3


def test_a_backlogs_new_rows_are_copied_as_the_json_insert_stores_them(
        stores: Stores, monkeypatch: pytest.MonkeyPatch, statements: None) -> None:
    """From ``COPY_ROWS`` new rows on, a page's new rows go in with a binary COPY: the same
    rows as the JSON insert stores (quotes, emoji, controls, ±2⁶³), the stored ones still
    upserted; a NUL or a lone surrogate fails the COPY and the page is written as before
    (NUL replaced, the surrogate refused), a stored row taken for new is upserted."""
    rm = stores.read_models
    assert isinstance(rm, PostgresReadModelStore)
    monkeypatch.setattr(save_postgres, "COPY_ROWS", 2)
    copies: list[int] = []
    copy_new = rm._copy_new

    def counted(conn: Any, values: list[tuple[Any, ...]], stored: set[str]) -> bool:
        done = copy_new(conn, values, stored)
        copies.append(len(values) - len(stored) if done else 0)
        return done

    monkeypatch.setattr(rm, "_copy_new", counted)
    by_copy = tricky_rows("k")
    rm.save(by_copy[:1], Position(EVENT_STORE_POSITION, 1))  # one new row: no COPY
    by_copy[0].messages_sent += 3
    rm.save(by_copy, Position(EVENT_STORE_POSITION, 2))  # 1 stored, 6 new: COPY
    assert copies == [0, len(by_copy) - 1]
    assert rm.load_rows({r.conversation_id for r in by_copy}) == {
        r.conversation_id: r for r in by_copy}
    monkeypatch.setattr(save_postgres, "COPY_ROWS", 10**9)  # the JSON insert, compared
    by_json = tricky_rows("q")
    by_json[0].messages_sent += 3
    rm.save(by_json, Position(EVENT_STORE_POSITION, 3))
    stored = rm.load_rows({r.conversation_id for r in by_json})
    assert [dataclasses.replace(stored[q.conversation_id], conversation_id=k.conversation_id)
            for q, k in zip(by_json, by_copy, strict=True)] == by_copy
    monkeypatch.setattr(save_postgres, "COPY_ROWS", 2)
    nul = [ConversationRow(f"z{n}", "ws1", "c1", "sms", 1, "contact", summary="bad\x00text")
           for n in range(3)]
    rm.save(nul, Position(EVENT_STORE_POSITION, 4))
    assert rm.load_rows({"z0"})["z0"].summary == "bad\ufffdtext"  # as before: replaced
    surrogate = [ConversationRow(f"s{n}", "ws1", "c2", "sms", 1, "contact", category="\ud800")
                 for n in range(3)]
    with pytest.raises(UnicodeEncodeError):  # as before: PostgreSQL text is UTF-8
        rm.save(surrogate, Position(EVENT_STORE_POSITION, 5))
    assert rm.load_rows({"s0", "s1", "s2"}) == {}
    taken = [ConversationRow("z0", "ws1", "c1", "sms", 1, "contact", messages_received=2),
             ConversationRow("z9", "ws1", "c9", "sms", 2, "contact"),
             ConversationRow("z8", "ws1", "c8", "sms", 3, "contact")]
    rm.save_snapshot(rm.snapshot(taken), Position(EVENT_STORE_POSITION, 6),
                     new={"z0", "z9", "z8"})  # z0 is stored: the COPY violates its key
    assert rm.load_rows({"z0", "z9", "z8"}) == {r.conversation_id: r for r in taken}
    assert rm.position(EVENT_STORE_POSITION) == 6
