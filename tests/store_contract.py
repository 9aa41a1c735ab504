"""The store contract: what every backend's EventStore and ReadModelStore must do.

``StoreContract`` states it; each subclass only says how to open its stores:
the in-memory fakes (``tests/unit/test_store_contract_fake.py``, no infra),
SQLite and PostgreSQL (``tests/integration/test_store_contract.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import IntegrityError

from schemas.events import ConversationClosed, ConversationOpened, MessageReceived
from services.composition import Stores
from services.conversation.application.ports import (
    ConcurrencyConflict,
    DeadLetter,
    Outcome,
    Position,
    Positions,
    ReadsBatchAtOnce,
)
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.domain.contact import aggregate_id
from services.in_process.pipeline import EmbeddedPipeline
from services.ingest.domain.normalise import parse
from services.projections.application.projector import EVENT_STORE_POSITION, ConversationProjection
from services.projections.domain.metrics import in_window
from services.projections.domain.rows import ConversationRow
from tests.unit.harness import ev, line, merge

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

        owner_of_p, owner_of_q = BatchUnitOfWork(stores.events), BatchUnitOfWork(stores.events)
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

    def test_seen_finds_ids_of_any_text(self, stores: Stores) -> None:
        odd = ["q\"uote", "back\\slash", "\\u0000", "nul\x00id", "é✓😀", "[\"x\", 1]", " "]
        stores.events.commit([], [outcome(e, ws="wq") for e in odd], [], None)
        for event_id in odd:  # each alone, so that a NUL id takes either path
            asked = {("wq", event_id), ("wq", event_id + "-not"), ("ws1", event_id)}
            assert stores.events.seen(asked) == {("wq", event_id)}
        asked = {("wq", e) for e in odd} | {("ws1", e) for e in odd}
        assert stores.events.seen(asked) == {("wq", e) for e in odd}

    def test_seen_and_load_answers_as_seen_and_load_many(self, stores: Stores) -> None:
        events = stores.events
        a = [opened("c1", 1, "k1"), received("c1", 2, "k1")]
        odd = ["q\"uote", "\\u0000", "nul\x00id", "é✓😀", "e1"]
        events.commit(a, [outcome(e) for e in odd], [], None)
        ids = [aggregate_id("ws1", c) for c in ("c1", "nobody")]
        stored = {("ws1", e) for e in odd}
        for asked in (stored | {("ws2", "e1")}, {("ws1", "nul\x00id")},
                      {("ws1", "e1"), ("ws1", "e9")}):
            # one round trip where the store can (ReadsBatchAtOnce), two calls elsewhere
            answer = (events.seen_and_load(asked, ids) if isinstance(events, ReadsBatchAtOnce)
                      else (events.seen(asked), events.load_many(ids)))
            assert answer == (asked & stored, {ids[0]: a})

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

    def test_the_first_position_may_be_offset_zero(self, stores: Stores) -> None:
        # a Kafka partition's first record has offset 0
        stores.events.commit([], [outcome("e1")], [], Position("kafka:p0", 0))
        assert stores.events.position("kafka:p0") == 0
        with pytest.raises(ConcurrencyConflict):
            stores.events.commit([], [outcome("e2")], [], Position("kafka:p0", 0))
        stores.events.commit([], [outcome("e2")], [], Position("kafka:p0", 1))
        assert stores.events.position("kafka:p0") == 1

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

    def test_read_model_expired_contacts_follow_the_last_activity(self, stores: Stores) -> None:
        rm = stores.read_models
        minute = 60 * 1_000_000
        t0 = int(T0.timestamp()) * 1_000_000
        rows = [row("x1", "b", 0), row("x2", "a", 0, last_activity_us=t0 + 10 * minute),
                row("x3", "c", 0, 5), row("x4", "d", 0, ws="ws2"), row("x5", "e", 20)]
        rm.save(rows, Position(EVENT_STORE_POSITION, 1))
        assert rm.expired_contacts("ws1", t0 + 5 * minute) == ["b"]  # x3 closed, x5 later
        assert rm.expired_contacts("ws1", t0 + 20 * minute) == ["a", "b", "e"]
        assert rm.open_workspaces() == ["ws1", "ws2"]
        # a message moves a conversation's last activity on; a close takes it out
        rm.save([row("x1", "b", 0, last_activity_us=t0 + 30 * minute, messages_received=1),
                 row("x5", "e", 20, 25)], Position(EVENT_STORE_POSITION, 2))
        assert rm.expired_contacts("ws1", t0 + 20 * minute) == ["a"]
        assert rm.expired_contacts("ws1", t0 + 30 * minute) == ["a", "b"]
        assert rm.expired_contacts("ws2", t0 + 30 * minute) == ["d"]

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



class ManyPositionsContract:
    """What a store that ``RecordsManyPositions`` must do too (PostgreSQL, the fake)."""

    def test_a_batch_must_continue_from_the_recorded_position(self, stores: Stores) -> None:
        # The Kafka runtime states where each batch continues from (-1: nothing
        # recorded yet). A batch decided on top of a commit storage does not have
        # (lost in a crash, say) is refused whole, so the service resumes from
        # storage instead of skipping the lost records.
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


def envelope(ws: str, event_id: str, kind: str, contact: str, at: datetime,
             **fields: Any) -> bytes:
    text = at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{at.microsecond:06d}" if at.microsecond
                                                 else "") + "Z"
    return orjson.dumps({"event_id": event_id, "type": kind, "workspace_id": ws,
                         "contact_id": contact, "occurred_at": text, **fields})


