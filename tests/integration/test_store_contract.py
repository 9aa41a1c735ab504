"""One contract for both storage backends (SQLite embedded, PostgreSQL production).

``StoreContract`` states what every backend must do; each subclass only says how
to open its stores. The end-to-end test then runs the whole embedded pipeline
over the same generated input on both and demands identical results.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import IntegrityError

from schemas.events import ConversationClosed, ConversationOpened, MessageReceived
from services.composition import Stores, _open_sqlite
from services.composition.postgres import open_postgres_stores
from services.conversation.application.ports import (
    ConcurrencyConflict,
    DeadLetter,
    Outcome,
    Position,
)
from services.conversation.application.processor import BatchProcessor
from services.conversation.domain.contact import aggregate_id
from services.in_process.pipeline import EmbeddedPipeline
from services.ingest.domain.normalise import parse
from services.projections.application.projector import EVENT_STORE_POSITION, ConversationProjection
from services.projections.domain.metrics import GROUPINGS, MetricsQuery, compute, in_window
from services.projections.domain.rows import ConversationRow
from tests.unit.harness import ev, line, merge

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def opened(contact: str, version: int, conv: str, minute: int = 0,
           ws: str = "ws1") -> ConversationOpened:
    return ConversationOpened(
        event_id=f"{conv}-open", workspace_id=ws, contact_id=contact, aggregate_version=version,
        occurred_at=T0 + timedelta(minutes=minute), source_event_id=f"src-{conv}-{version}",
        conversation_id=conv, opened_by="contact", channel_type="whatsapp")


def received(contact: str, version: int, conv: str, ws: str = "ws1") -> MessageReceived:
    return MessageReceived(
        event_id=f"{conv}-m{version}", workspace_id=ws, contact_id=contact,
        aggregate_version=version, occurred_at=T0, source_event_id=f"src-{conv}-{version}",
        conversation_id=conv)


def closed(contact: str, version: int, conv: str, minute: int) -> ConversationClosed:
    return ConversationClosed(
        event_id=f"{conv}-close", workspace_id="ws1", contact_id=contact,
        aggregate_version=version, occurred_at=T0 + timedelta(minutes=minute),
        source_event_id=f"src-{conv}-close", conversation_id=conv, closed_by="user",
        closed_by_actor="u1", category="sales", summary="résumé ✓")


def outcome(event_id: str, contact: str = "c1", ws: str = "ws1") -> Outcome:
    return Outcome(ws, event_id, contact, "message.received", T0, "accepted")


def row(conv: str, contact: str, minute: int, closed_minute: int | None = None,
        ws: str = "ws1", **extra: Any) -> ConversationRow:
    closed_us = None if closed_minute is None else (
        int(T0.timestamp()) + closed_minute * 60) * 1_000_000
    return ConversationRow(
        conversation_id=conv, workspace_id=ws, contact_id=contact, channel="sms",
        opened_us=(int(T0.timestamp()) + minute * 60) * 1_000_000, opened_by="contact",
        closed_us=closed_us, closed_by="user" if closed_us else None, **extra)


class StoreContract:
    """What every backend's EventStore and ReadModelStore must do."""

    @pytest.fixture
    def stores(self) -> Iterator[Stores]:
        raise NotImplementedError

    def dead_letter_count(self, stores: Stores) -> int:
        raise NotImplementedError

    # -- event store -------------------------------------------------------------

    def test_commit_then_load_round_trips(self, stores: Stores) -> None:
        a = [opened("c1", 1, "k1"), received("c1", 2, "k1")]
        b = [opened("c2", 1, "k2")]
        ids = stores.events.commit([*a, *b], [outcome("e1"), outcome("e2")], [], None)
        assert len(ids) == 3
        assert stores.events.load(aggregate_id("ws1", "c1")) == a
        assert stores.events.load(aggregate_id("ws1", "c2")) == b
        assert stores.events.load(aggregate_id("ws1", "nobody")) == []

    def test_load_many_reads_several_aggregates_at_once(self, stores: Stores) -> None:
        a = [opened("c1", 1, "k1"), received("c1", 2, "k1")]
        stores.events.commit([*a, opened("c2", 1, "k2")], [], [], None)
        ids = [aggregate_id("ws1", c) for c in ("c1", "c2", "c3")]
        assert stores.events.load_many(ids) == {ids[0]: a, ids[1]: [opened("c2", 1, "k2")]}
        assert stores.events.load_many([]) == {}

    def test_notification_ids_increase_and_read_pages(self, stores: Stores) -> None:
        ids: list[int] = []
        for n in range(3):
            ids += stores.events.commit(
                [opened(f"c{n}", 1, f"k{n}"), received(f"c{n}", 2, f"k{n}")], [], [], None)
        assert ids == sorted(ids) and len(set(ids)) == 6
        assert stores.events.max_notification_id() == ids[-1]
        first = stores.events.read(0, 4)
        assert [i for i, _ in first] == ids[:4]
        rest = stores.events.read(first[-1][0], 100)
        assert [i for i, _ in rest] == ids[4:]
        assert rest[-1][1] == received("c2", 2, "k2")
        assert stores.events.read(ids[-1], 10) == []

    def test_a_batch_is_refused_when_an_aggregate_it_only_read_moved(
            self, stores: Stores) -> None:
        c1, c2, never = (aggregate_id("ws1", c) for c in ("c1", "c2", "never"))
        stores.events.commit([opened("c1", 1, "k1"), received("c1", 2, "k1")], [], [], None)
        # read at the current version (or none yet for an aggregate without events): kept
        stores.events.commit([opened("c2", 1, "k2")], [outcome("e1", "c2")], [], None,
                             read={c1: 2, never: 0})
        # c1 was read at version 1, but another writer has stored version 2 since
        with pytest.raises(ConcurrencyConflict, match="moved"):
            stores.events.commit([received("c2", 2, "k2")], [outcome("e2", "c2")], [], None,
                                 read={c1: 1})
        with pytest.raises(ConcurrencyConflict, match="moved"):  # nothing written but outcomes
            stores.events.commit([], [outcome("e3")], [], None, read={never: 1})
        assert stores.events.seen({("ws1", "e2"), ("ws1", "e3")}) == set()
        assert len(stores.events.load(c2)) == 1

    def test_a_rejection_on_a_contact_another_processor_merged_is_redone(
            self, stores: Stores) -> None:
        """Two conversation copies: the one owning p caches p; the other merges p into q."""
        def items(*envelopes: dict[str, Any]) -> list[Any]:
            return [parse(line(e)) for e in envelopes]

        owner_of_p, owner_of_q = BatchProcessor(stores.events), BatchProcessor(stores.events)
        owner_of_p.process(items(ev("message.received", contact="p", t=0),
                                 ev("conversation.close", contact="p", t=1)))
        owner_of_q.process(items(ev("message.received", contact="q", t=2), merge("q", "p", t=3)))
        result = owner_of_p.process(items(ev("conversation.close", contact="p", t=4)))
        assert (result.accepted, dict(result.rejected)) == (1, {})
        q_events = stores.events.load(aggregate_id("ws1", "q"))
        assert [type(e).__name__ for e in q_events][-1] == "ConversationClosed"

    def test_version_conflict_keeps_nothing_of_the_batch(self, stores: Stores) -> None:
        stores.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [], None)
        before = self.dead_letter_count(stores)
        with pytest.raises(ConcurrencyConflict):
            stores.events.commit(
                [opened("c2", 1, "k2"), opened("c1", 1, "k9")],
                [outcome("e2", "c2"), outcome("e3")],
                [DeadLetter("{oops", "malformed JSON", "import")], Position("ingest:p0", 5))
        assert stores.events.load(aggregate_id("ws1", "c2")) == []
        assert stores.events.load(aggregate_id("ws1", "c1")) == [opened("c1", 1, "k1")]
        assert stores.events.seen({("ws1", "e2"), ("ws1", "e3")}) == set()
        assert stores.events.position("ingest:p0") is None
        assert self.dead_letter_count(stores) == before

    @pytest.mark.parametrize("with_events", [True, False])
    def test_duplicate_outcome_is_a_conflict(self, stores: Stores, with_events: bool) -> None:
        stores.events.commit([], [outcome("e1")], [], None)
        events = [opened("c5", 1, "k5")] if with_events else []
        with pytest.raises(ConcurrencyConflict):
            stores.events.commit(events, [outcome("e1")], [DeadLetter("x", "bad", "import")],
                                 None)
        assert stores.events.load(aggregate_id("ws1", "c5")) == []
        assert self.dead_letter_count(stores) == 0

    def test_seen_reports_recorded_keys_only(self, stores: Stores) -> None:
        assert stores.events.seen(set()) == set()
        stores.events.commit([], [outcome("e1"), outcome("e2", ws="ws2")], [], None)
        keys = {("ws1", "e1"), ("ws2", "e2"), ("ws1", "e2"), ("ws2", "e1")}
        assert stores.events.seen(keys) == {("ws1", "e1"), ("ws2", "e2")}

    def test_dead_letters_are_kept(self, stores: Stores) -> None:
        stores.events.commit([], [], [DeadLetter("{bad\x00", "malformed JSON", "import"),
                                      DeadLetter("{}", "field required", "http", "ws1", "e")],
                             None)
        assert self.dead_letter_count(stores) == 2

    def test_position_is_atomic_with_commit_and_monotonic(self, stores: Stores) -> None:
        assert stores.events.position("kafka:p0") is None
        stores.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [],
                             Position("kafka:p0", 5))
        assert stores.events.position("kafka:p0") == 5
        stores.events.commit([], [outcome("e2")], [], Position("kafka:p0", 6))
        assert stores.events.position("kafka:p0") == 6
        for stale in (6, 3):
            with pytest.raises(ConcurrencyConflict):
                stores.events.commit([opened("c2", 1, "k2")], [outcome("e3")], [],
                                     Position("kafka:p0", stale))
        assert stores.events.load(aggregate_id("ws1", "c2")) == []
        assert stores.events.seen({("ws1", "e3")}) == set()
        assert stores.events.position("kafka:p0") == 6
        assert stores.events.position("kafka:p1") is None

    # -- read model --------------------------------------------------------------

    def test_read_model_save_load_and_query(self, stores: Stores) -> None:
        rm = stores.read_models
        rows = [row("k3", "b", 5), row("k1", "a", 5, 20, assignee_id="u1", team_id="t"),
                row("k2", "a", 1), row("k4", "z", 0, ws="ws2")]
        rm.save(rows, Position(EVENT_STORE_POSITION, 4))
        assert rm.position(EVENT_STORE_POSITION) == 4
        assert rm.load_rows({"k1", "k4", "nope"}) == {"k1": rows[1], "k4": rows[3]}
        assert rm.load_rows(set()) == {}
        assert [r.conversation_id for r in rm.conversations("ws1")] == ["k2", "k1", "k3"]
        assert [r.conversation_id for r in rm.conversations("ws1", "a")] == ["k2", "k1"]
        assert [r.conversation_id for r in rm.conversations("ws1", status="open")] == ["k2",
                                                                                       "k3"]
        assert [r.conversation_id for r in rm.conversations("ws1", "a", "closed")] == ["k1"]
        assert rm.conversations("ws3") == []
        facts = sorted(rm.facts("ws1"), key=lambda f: (f.opened_us, f.closed_us or 0))
        assert [(f.assignee_id, f.team_id, f.closed_by) for f in facts] == [
            (None, None, None), (None, None, None), ("u1", "t", "user")]
        updated = row("k2", "a", 1, 30, messages_received=3, summary="ok")
        rm.save([updated], Position(EVENT_STORE_POSITION, 9))
        assert rm.load_rows({"k2"}) == {"k2": updated}
        assert rm.position(EVENT_STORE_POSITION) == 9

    def test_read_model_facts_of_a_window(self, stores: Stores) -> None:
        rm = stores.read_models
        minute = 60 * 1_000_000
        t0 = int(T0.timestamp()) * 1_000_000
        rows = [row("w1", "a", 0), row("w2", "b", 0, 100), row("w3", "c", 200),
                row("w4", "d", 0, 30, first_message_us=t0, first_response_us=t0 + 150 * minute),
                row("w5", "e", 150, ws="ws2")]
        rm.save(rows, Position(EVENT_STORE_POSITION, 1))
        window = (t0 + 90 * minute, t0 + 160 * minute)  # [90, 160) minutes after T0
        found = sorted(f.opened_us for f in rm.facts("ws1", window))
        assert found == [t0, t0]  # w2 closed at 100, w4 first response at 150
        everything = list(rm.facts("ws1"))
        assert sorted(f.opened_us for f in everything if in_window(f, window)) == found
        assert len(list(rm.facts("ws1", (t0 + 200 * minute, t0 + 201 * minute)))) == 1
        assert list(rm.facts("ws1", (t0 + 201 * minute, t0 + 400 * minute))) == []
        closed = rm.conversations("ws1", between=("closed_us", t0 + 30 * minute,
                                                  t0 + 100 * minute))
        assert [r.conversation_id for r in closed] == ["w4"]  # w2's 100 is outside
        opened = rm.conversations("ws1", status="open", between=("opened_us", t0, t0 + minute))
        assert [r.conversation_id for r in opened] == ["w1"]

    def test_read_model_position_is_atomic_and_monotonic(self, stores: Stores) -> None:
        rm = stores.read_models
        rm.save([row("k1", "a", 1)], Position(EVENT_STORE_POSITION, 9))
        with pytest.raises(IntegrityError):
            rm.save([row("k1", "a", 1, 5), row("k2", "b", 2)], Position(EVENT_STORE_POSITION, 9))
        assert rm.load_rows({"k1", "k2"}) == {"k1": row("k1", "a", 1)}
        assert rm.position(EVENT_STORE_POSITION) == 9

    def test_read_model_save_is_a_compare_and_set_on_the_position(self, stores: Stores) -> None:
        rm = stores.read_models
        rm.save([row("k1", "a", 1)], Position(EVENT_STORE_POSITION, 4, after=0))
        # a batch computed from position 0 arrives after another process recorded 4
        with pytest.raises(IntegrityError, match="moved to 4"):
            rm.save([row("k1", "a", 1, 5), row("k2", "b", 2)],
                    Position(EVENT_STORE_POSITION, 7, after=0))
        assert rm.load_rows({"k1", "k2"}) == {"k1": row("k1", "a", 1)}
        assert rm.position(EVENT_STORE_POSITION) == 4
        rm.save([row("k2", "b", 2)], Position(EVENT_STORE_POSITION, 7, after=4))
        assert rm.position(EVENT_STORE_POSITION) == 7

    def test_two_projections_on_one_store_never_lose_an_update(self, stores: Stores) -> None:
        pipeline = EmbeddedPipeline(stores.events, stores.read_models)
        pipeline.project_inline = False
        first, second = (ConversationProjection(stores.read_models) for _ in range(2))

        def receive(n: int) -> None:
            pipeline.process_batch([envelope("ws1", f"m{n}", "message.received", "c1",
                                             T0 + timedelta(seconds=n),
                                             channel={"type": "sms"})])

        receive(1)
        first.catch_up(stores.events)
        receive(2)
        second.catch_up(stores.events)  # first's cached row is now stale
        receive(3)
        first.catch_up(stores.events)
        [row_now] = stores.read_models.conversations("ws1")
        assert row_now.messages_received == 3

    def test_reset_forgets_rows_and_projection_positions_only(self, stores: Stores) -> None:
        stores.read_models.save([row("k1", "a", 1)], Position(EVENT_STORE_POSITION, 3))
        stores.events.commit([], [outcome("e1")], [], Position("ingest:p0", 7))
        stores.read_models.reset()
        assert stores.read_models.conversations("ws1") == []
        assert stores.read_models.position(EVENT_STORE_POSITION) is None
        assert stores.events.position("ingest:p0") == 7
        stores.read_models.save([row("k1", "a", 1)], Position(EVENT_STORE_POSITION, 1))
        assert stores.read_models.position(EVENT_STORE_POSITION) == 1


class TestSQLiteStores(StoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path) -> Iterator[Stores]:
        opened_stores = _open_sqlite(str(tmp_path / "contract.db"))
        yield opened_stores
        opened_stores.close()

    def dead_letter_count(self, stores: Stores) -> int:
        with stores.events.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute("SELECT count(*) FROM dead_letters")
            return int(c.fetchone()[0])


class TestPostgresStores(StoreContract):
    @pytest.fixture
    def stores(self, postgres_url: str) -> Iterator[Stores]:
        opened_stores = open_postgres_stores(postgres_url)
        yield opened_stores
        opened_stores.close()

    def dead_letter_count(self, stores: Stores) -> int:
        with stores.events.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            schema = stores.events.datastore.schema  # type: ignore[attr-defined]
            c.execute(f'SELECT count(*) AS n FROM "{schema}".dead_letters')
            return int(c.fetchone()["n"])

    def test_a_batch_must_continue_from_the_recorded_position(self, stores: Stores) -> None:
        # The Kafka runtime states where each batch continues from (-1: nothing
        # recorded yet). A batch decided on top of a commit storage does not have
        # (lost in a crash, say) is refused whole, so the service resumes from
        # storage instead of skipping the lost records.
        from services.conversation.entrypoints.kafka import Positions

        stores.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [],
                             Position("kafka:p0", 5, -1))
        with pytest.raises(ConcurrencyConflict):  # p0 is at 5, not 8
            stores.events.commit([opened("c2", 1, "k2")], [outcome("e2")], [],
                                 Positions("kafka:p0", 12, 8, others=(
                                     Position("kafka:p1", 3, -1),)))
        with pytest.raises(ConcurrencyConflict):  # p1 has nothing recorded, not 2
            stores.events.commit([], [outcome("e3")], [], Positions(
                "kafka:p0", 12, 5, others=(Position("kafka:p1", 3, 2),)))
        assert stores.events.load(aggregate_id("ws1", "c2")) == []
        assert stores.events.seen({("ws1", "e2"), ("ws1", "e3")}) == set()
        assert (stores.events.position("kafka:p0"), stores.events.position("kafka:p1")) == (
            5, None)
        stores.events.commit([], [outcome("e3")], [], Positions(
            "kafka:p0", 12, 5, others=(Position("kafka:p1", 3, -1),)))
        assert (stores.events.position("kafka:p0"), stores.events.position("kafka:p1")) == (
            12, 3)

    def test_reopening_is_idempotent_and_concurrent_safe(self, postgres_url: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            opened_all = list(pool.map(lambda _: open_postgres_stores(postgres_url), range(4)))
        for each in opened_all:
            each.close()
        again = open_postgres_stores(postgres_url)
        assert again.events.max_notification_id() == 0
        again.close()

    def test_nul_characters_are_invalid_and_do_not_break_a_batch(self, stores: Stores) -> None:
        pipeline = EmbeddedPipeline(stores.events, stores.read_models)
        nul = envelope("ws1", "e\x001", "message.received", "c\x001", T0,
                       channel={"type": "sms"})
        good = envelope("ws1", "e2", "message.received", "c2", T0, channel={"type": "sms"})
        summary = pipeline.run([nul, nul, b'{"bad": "\\u0000', good])
        assert (summary.accepted, summary.duplicate, summary.invalid) == (1, 0, 3)
        assert [r.contact_id for r in stores.read_models.conversations("ws1")] == ["c2"]


# -- end to end: same input, same answers on both backends -----------------------

def envelope(ws: str, event_id: str, kind: str, contact: str, at: datetime,
             **fields: Any) -> bytes:
    text = at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{at.microsecond:06d}" if at.microsecond
                                                 else "") + "Z"
    return orjson.dumps({"event_id": event_id, "type": kind, "workspace_id": ws,
                         "contact_id": contact, "occurred_at": text, **fields})


def generate_lines(count: int = 2_000, seed: int = 20261124) -> list[bytes]:
    """A deterministic mix of every event type, a few invalid and duplicate lines."""
    rnd = random.Random(seed)
    channels = ["whatsapp", "facebook", "viber", "sms", "webchat", "email"]
    at = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    lines: list[bytes] = []
    for n in range(count):
        at += timedelta(seconds=rnd.randint(1, 900), microseconds=rnd.choice([0, 0, 250_000]))
        ws = rnd.choice(["ws_a", "ws_a", "ws_b"])
        contact, eid = f"c{rnd.randint(0, 29)}", f"{ws}-e{n}"
        roll = rnd.random()
        if roll < 0.03 and lines:
            lines.append(rnd.choice(lines))  # redelivery
            continue
        if roll < 0.05:
            lines.append(rnd.choice([b"{not json", envelope(ws, eid, "message.sent", contact,
                                                            at, actor={"type": "contact"}),
                                     b'{"event_id": "x", "type": "welcome"}']))
            continue
        user = {"type": rnd.choice(["user", "automation"]), "id": f"u{rnd.randint(1, 4)}"}
        kind = rnd.choices(
            ["message.received", "message.sent", "conversation.open", "conversation.close",
             "conversation.assign", "welcome", "dialogflow.response", "contact.merge"],
            [30, 15, 8, 16, 10, 5, 6, 2])[0]
        extra: dict[str, Any] = {}
        if kind in ("message.received", "welcome") or rnd.random() < 0.3:
            extra["channel"] = {"type": rnd.choice(channels)}
        if kind in ("message.sent", "conversation.open", "conversation.close",
                    "conversation.assign"):
            extra["actor"] = user
        if kind == "conversation.close" and rnd.random() < 0.5:
            extra["data"] = {"category": rnd.choice(["sales", "support"]), "summary": "fait ✓"}
        elif kind == "conversation.assign":
            extra["data"] = {"assignee_id": rnd.choice(["a1", "a2", None])}
            if rnd.random() < 0.5:
                extra["data"]["team_id"] = rnd.choice(["t1", "t2", None])
        elif kind == "dialogflow.response":
            extra["data"] = {"parameters": {"RB_MARKDONE": rnd.choice([True, "false", "TRUE"])}}
        elif kind == "contact.merge":
            extra["data"] = {"secondary_contact_id": f"c{rnd.randint(0, 29)}"}
        lines.append(envelope(ws, eid, kind, contact, at, **extra))
    return lines


def snapshot(stores: Stores) -> dict[str, Any]:
    """Every workspace's conversation rows and metrics, in comparable form."""
    result: dict[str, Any] = {}
    for ws in ("ws_a", "ws_b"):
        result[f"{ws}/rows"] = [r.public() for r in stores.read_models.conversations(ws)]
        for group in GROUPINGS:
            for tz in ("UTC", "America/Sao_Paulo"):
                query = MetricsQuery(ws, group, tz, date(2026, 11, 26), None)
                result[f"{ws}/{group}/{tz}"] = compute(query, stores.read_models.facts(ws))
    return result


def test_pipeline_gives_identical_results_on_sqlite_and_postgres(
        tmp_path: Path, postgres_url: str) -> None:
    lines = generate_lines()
    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    sqlite, postgres = _open_sqlite(str(tmp_path / "e2e.db")), open_postgres_stores(postgres_url)
    try:
        for name, stores in (("sqlite", sqlite), ("postgres", postgres)):
            summary = EmbeddedPipeline(stores.events, stores.read_models, batch_size=150).run(lines)
            results[name] = (summary.as_dict(), snapshot(stores))
        assert results["sqlite"][0] == results["postgres"][0]
        summary = results["postgres"][0]
        assert summary["read"] == len(lines) and summary["invalid"] > 0
        assert summary["duplicate"] > 0 and summary["rejected"]
        assert len(results["postgres"][1]["ws_a/rows"]) > 50
        assert results["sqlite"][1] == results["postgres"][1]

        replayed = EmbeddedPipeline(postgres.events, postgres.read_models)
        assert replayed.projection.replay(postgres.events) > 0
        assert snapshot(postgres) == results["postgres"][1]

        again = EmbeddedPipeline(postgres.events, postgres.read_models).run(lines)
        assert again.accepted == 0 and not again.rejected
        assert snapshot(postgres) == results["postgres"][1]
    finally:
        sqlite.close()
        postgres.close()


def test_fresh_schema_per_test(postgres_url: str) -> None:
    """The fixture's isolation: a new schema starts empty."""
    stores = open_postgres_stores(postgres_url)
    try:
        assert stores.events.max_notification_id() == 0
        assert stores.events.seen({("ws1", "e1")}) == set()
        assert stores.events.load_many([uuid.UUID(int=0)]) == {}
    finally:
        stores.close()
