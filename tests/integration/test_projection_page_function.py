"""The projections' page function (``page_function``) against the statements' way
(``save_postgres``): the same pages give the same rows, the same dirty metric units, the
same position and the same notification, and every refusal leaves nothing written."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from services.composition import Stores
from services.composition.postgres import open_postgres_stores
from services.conversation.application.ports import Position
from services.projections.adapters import save_postgres
from services.projections.adapters.notify import PROJECTED_CHANNEL
from services.projections.adapters.store_postgres import PostgresReadModelStore
from services.projections.application.projector import EVENT_STORE_POSITION
from services.projections.domain.rows import ConversationRow
from tests.integration.conftest import fresh_schema_url, libpq_url

pytestmark = pytest.mark.integration
HOUR = 3_600_000_000
US_MAX = 2**63 - 1


@pytest.fixture
def two(postgres_database_url: str) -> Iterator[tuple[Stores, Stores]]:
    """Two stores in two fresh schemas: one writes every page in one call, the other
    the statements' way."""
    with fresh_schema_url(postgres_database_url) as a, fresh_schema_url(postgres_database_url) as b:
        first, second = open_postgres_stores(a), open_postgres_stores(b)
        yield first, second
        first.close()
        second.close()


def store(stores: Stores) -> PostgresReadModelStore:
    rm = stores.read_models
    assert isinstance(rm, PostgresReadModelStore)
    return rm


def dirty(rm: PostgresReadModelStore) -> list[tuple[Any, ...]]:
    with rm.datastore.transaction(commit=False) as curs:
        curs.execute(f'SELECT workspace_id, lvl, kind, slot FROM "{rm.datastore.schema}"'
                     '.metric_cells_dirty ORDER BY 1, 2, 3, 4')
        return [tuple(row.values()) for row in curs.fetchall()]


def clear_dirty(rm: PostgresReadModelStore) -> None:
    with rm.datastore.transaction(commit=True) as curs:
        curs.execute(f'DELETE FROM "{rm.datastore.schema}".metric_cells_dirty')


def random_row(rng: random.Random, cid: str, stored: ConversationRow | None) -> ConversationRow:
    """A conversation row as a page could carry it: new, or a stored one moved on
    (opened stays; messages, a first response, a close may come)."""
    def moment() -> int | None:
        return rng.choice([None, rng.randrange(-48 * HOUR, 48 * HOUR),
                           rng.randrange(0, 10**6) * 900_000_000, US_MAX - rng.randrange(5)])
    opened = stored.opened_us if stored else rng.choice(
        [rng.randrange(-48 * HOUR, 48 * HOUR), 0, -1, US_MAX - 7])
    return ConversationRow(
        cid, stored.workspace_id if stored else rng.choice(["ws1", "ws2", "wß"]),
        stored.contact_id if stored else f"c{cid}",
        stored.channel if stored else rng.choice([None, "sms", "email"]),
        opened, "contact", closed_us=moment(), closed_by=rng.choice([None, "agent"]),
        messages_received=rng.randrange(3), messages_sent=rng.randrange(3),
        first_message_us=moment(), first_response_us=moment(),
        last_activity_us=rng.choice([None, opened]))


@pytest.mark.parametrize("seed", range(6))
def test_random_pages_give_what_the_statements_give(
        two: tuple[Stores, Stores], monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    one_call, statements = store(two[0]), store(two[1])
    calls: list[int] = []
    save_page = save_postgres.SnapshotWriter._save_page

    def counted(self: Any, values: Any, position: Position, new: Any) -> bool:
        done = save_page(self, values, position, new)
        calls.append(int(done))
        return done

    monkeypatch.setattr(save_postgres.SnapshotWriter, "_save_page", counted)
    known: dict[str, ConversationRow] = {}
    for page in range(1, 9):
        ids = rng.sample([f"p{n}" for n in range(40)], rng.randrange(0, 25))
        rows = [random_row(rng, cid, known.get(cid)) for cid in ids]
        started = {cid for cid in ids if cid not in known and rng.random() < 0.7}
        for rm in (one_call, statements):
            clear_dirty(rm)
        position = Position(EVENT_STORE_POSITION, page, after=page - 1 if page > 1 else None)
        one_call.save_snapshot(one_call.snapshot(rows), position, new=started)
        with monkeypatch.context() as patched:
            patched.setattr(save_postgres, "ONE_CALL_ROWS", 0)
            statements.save_snapshot(statements.snapshot(rows), position, new=started)
        known.update({r.conversation_id: r for r in rows})
        assert dirty(one_call) == dirty(statements), page
        assert one_call.load_rows(set(known)) == statements.load_rows(set(known)) == known
        assert one_call.position(EVENT_STORE_POSITION) == page
    assert calls == [1] * 8  # every page of the first store went in one call


def test_a_moved_position_or_one_not_moving_forward_writes_nothing(
        two: tuple[Stores, Stores]) -> None:
    rm = store(two[0])
    first = ConversationRow("k1", "ws1", "c1", "sms", 1_000, "contact")
    rm.save([first], Position(EVENT_STORE_POSITION, 4, after=0))
    clear_dirty(rm)
    later = ConversationRow("k1", "ws1", "c1", "sms", 1_000, "contact", closed_us=HOUR)
    fresh = ConversationRow("k2", "ws2", "c2", "sms", 2_000, "contact")
    with pytest.raises(IntegrityError, match=r"projection position .* moved to 4 while a "
                                             r"batch computed after 1 was projected"):
        rm.save([later, fresh], Position(EVENT_STORE_POSITION, 7, after=1))
    with pytest.raises(IntegrityError, match="Failed to record tracking"):
        rm.save([later, fresh], Position(EVENT_STORE_POSITION, 4))  # not forward
    assert rm.load_rows({"k1", "k2"}) == {"k1": first}
    assert dirty(rm) == []
    assert rm.position(EVENT_STORE_POSITION) == 4


def test_a_started_row_stored_meanwhile_is_upserted_the_statements_way(
        two: tuple[Stores, Stores], monkeypatch: pytest.MonkeyPatch) -> None:
    """A row the page says it started, stored after all: the call violates the key and
    writes nothing; the page is written again with every row upserted."""
    rm = store(two[0])
    stored = ConversationRow("h2", "ws1", "c2", "sms", 2_000, "contact")
    rm.save([stored], Position(EVENT_STORE_POSITION, 1))
    upserted: list[bool] = []
    save = rm._save

    def statements(values: Any, position: Position, **kwargs: Any) -> None:
        upserted.append(kwargs["upsert"])
        save(values, position, **kwargs)

    monkeypatch.setattr(rm, "_save", statements)
    again = ConversationRow("h2", "ws1", "c2", "sms", 2_000, "contact", messages_sent=5)
    third = ConversationRow("h3", "ws2", "c3", None, 3_000, "contact")
    rm.save_snapshot(rm.snapshot([again, third]), Position(EVENT_STORE_POSITION, 2),
                     new={"h2", "h3"})
    assert upserted == [True]
    assert rm.load_rows({"h2", "h3"}) == {"h2": again, "h3": third}
    assert rm.position(EVENT_STORE_POSITION) == 2


def test_the_call_notifies_the_pages_workspaces(
        two: tuple[Stores, Stores], postgres_database_url: str) -> None:
    rm = store(two[0])
    with psycopg.connect(libpq_url(postgres_database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {PROJECTED_CHANNEL}")
        rm.save([ConversationRow("n1", "wsB", "c1", "sms", 1, "contact"),
                 ConversationRow("n2", "wsA", "c2", "sms", 2, "contact")],
                Position(EVENT_STORE_POSITION, 1))
        rm.save([], Position(EVENT_STORE_POSITION, 2))  # an empty page: the position only
        got = [n.payload for n in listener.notifies(timeout=1, stop_after=2)]
    assert got == ["wsA,wsB"]
    assert rm.position(EVENT_STORE_POSITION) == 2


def test_values_json_cannot_carry_and_large_pages_go_the_statements_way(
        two: tuple[Stores, Stores], monkeypatch: pytest.MonkeyPatch) -> None:
    rm = store(two[0])
    ways: list[str] = []
    save_page, save = rm._save_page, rm._save
    monkeypatch.setattr(rm, "_save_page", lambda *a: ways.append("call") or save_page(*a))
    monkeypatch.setattr(rm, "_save", lambda *a, **k: ways.append("statements") or save(*a, **k))
    nul = ConversationRow("u1", "ws1", "c1", "sms", 1, "contact", summary="bad\x00text")
    rm.save([nul], Position(EVENT_STORE_POSITION, 1))
    assert rm.load_rows({"u1"})["u1"].summary == "bad\ufffdtext"
    many = [ConversationRow(f"m{n}", "ws1", f"c{n}", "sms", n, "contact")
            for n in range(save_postgres.ONE_CALL_ROWS)]
    rm.save(many, Position(EVENT_STORE_POSITION, 2))
    assert ways == ["call", "statements", "statements"]
    assert len(rm.load_rows({r.conversation_id for r in many})) == len(many)
