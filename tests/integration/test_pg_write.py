"""The conversation store's two write paths: ``COPY`` (pg_copy.py) and the commit function.

The store contract runs on it too (``TestPostgresStoresCopying``); these tests add
what the contract cannot see: that ``COPY`` is really the path taken, that its
notification ids are the stored ones and keep increasing across both paths, that a
version conflict raised by ``COPY`` is redone by the unit of work on a connection
still fit for use, and that a batch cut off between its two copies (a crash) is
kept not at all and, redelivered from the tracked position, exactly once. Small
batches are one call of the commit function (``pg_sql.COMMIT_FUNCTION``): a schema
made before it existed gets it when opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import ProgrammingError

from services.composition import Stores
from services.composition.postgres import open_postgres_stores
from services.conversation.adapters import pg_copied, pg_recorder
from services.conversation.application.ports import ConcurrencyConflict, Position
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.domain.contact import aggregate_id
from services.ingest.domain.normalise import parse
from tests.store_contract import opened, outcome
from tests.unit.harness import ev, line

pytestmark = pytest.mark.integration


def items(*envelopes: dict[str, Any]) -> list[Any]:
    return [parse(line(e)) for e in envelopes]


def conversation(contact: str, count: int, t: float = 0) -> list[dict[str, Any]]:
    return [ev("message.received", contact=contact, t=t + i / 60) for i in range(count)]


@pytest.fixture
def stores(postgres_url: str) -> Iterator[Stores]:
    opened = open_postgres_stores(postgres_url)
    yield opened
    opened.close()


class Spy:
    """Counts the copies and can fail the events' copy (after the outcomes' copy)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.outcomes = self.events = 0
        self.fail_events: BaseException | None = None
        copy_outcomes, copy_events = pg_copied.copy_outcomes_rows, \
            pg_copied.copy_events_rows

        def outcomes(*args: Any) -> None:
            self.outcomes += 1
            copy_outcomes(*args)

        def events(*args: Any) -> list[int]:
            self.events += 1
            if self.fail_events is not None:
                raise self.fail_events
            return copy_events(*args)

        monkeypatch.setattr(pg_copied, "copy_outcomes_rows", outcomes)
        monkeypatch.setattr(pg_copied, "copy_events_rows", events)


def stored_ids(stores: Stores) -> list[int]:
    return [nid for nid, _ in stores.events.read_raw(0, 10_000)]  # type: ignore[attr-defined]


def test_ids_returned_are_the_stored_ones_across_both_paths(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    stores.events.recorder.copy_min_rows = 5  # type: ignore[attr-defined]
    uow = BatchUnitOfWork(stores.events)
    returned: list[int] = []
    for n, size in enumerate((3, 7, 1, 12, 4, 5)):  # below and at/above the threshold
        result = uow.process(items(*conversation(f"c{n}", size)))
        assert result.accepted == size
        returned += [nid for nid, _ in result.events]
    # a batch of n messages is n outcomes and n + 1 events (the conversation opens):
    # events copied for 7, 12, 4 and 5 messages, outcomes for 7, 12 and 5
    assert (spy.events, spy.outcomes) == (4, 3)
    assert returned == stored_ids(stores)
    assert returned == sorted(set(returned))
    events = stores.events.load(aggregate_id("ws1", "c3"))
    assert [e.aggregate_version for e in events] == list(range(1, len(events) + 1))


def test_a_version_conflict_in_copy_is_redone_by_the_unit_of_work(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    stores.events.recorder.copy_min_rows = 1  # type: ignore[attr-defined]
    stores.events.commit([opened("c9", 1, "k1")], [], [], None)
    with pytest.raises(ConcurrencyConflict):  # the copy itself meets the taken version
        stores.events.commit([opened("c9", 1, "k9")], [outcome("e9", "c9")], [], None)
    assert stores.events.seen({("ws1", "e9")}) == set()
    mine, other = BatchUnitOfWork(stores.events), BatchUnitOfWork(stores.events)
    mine.process(items(*conversation("c1", 3)))  # cached in `mine` at its version
    other.process(items(*conversation("c1", 2, t=1)))  # moves c1 behind mine's back
    copies = spy.events
    late = conversation("c1", 4, t=3)
    result = mine.process(items(*late))  # conflict in COPY, then decided again and stored
    assert result.accepted == 4
    assert spy.events == copies + 2  # the refused copy and the redone one
    events = stores.events.load(aggregate_id("ws1", "c1"))
    assert [e.aggregate_version for e in events] == list(range(1, len(events) + 1))
    assert stores.events.seen({("ws1", e["event_id"]) for e in late}) == {
        ("ws1", e["event_id"]) for e in late}


def test_a_batch_cut_between_its_copies_is_kept_once_after_redelivery(
        postgres_url: str, stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    stores.events.recorder.copy_min_rows = 1  # type: ignore[attr-defined]
    first, second = conversation("c1", 6), conversation("c2", 5, t=1)
    uow = BatchUnitOfWork(stores.events)
    uow.process(items(*first), position=Position("ingest:p0", 5, after=-1))
    spy.fail_events = KeyboardInterrupt()  # the process dies mid-transaction
    with pytest.raises(KeyboardInterrupt):
        uow.process(items(*second), position=Position("ingest:p0", 10, after=5))
    assert spy.outcomes == 2  # the second batch's outcomes were copied, then lost
    assert stores.events.position("ingest:p0") == 5
    assert stores.events.seen({("ws1", e["event_id"]) for e in second}) == set()
    assert stores.events.load(aggregate_id("ws1", "c2")) == []
    spy.fail_events = None
    restarted = open_postgres_stores(postgres_url)  # a new process resumes from position 5
    try:
        restarted.events.recorder.copy_min_rows = 1  # type: ignore[attr-defined]
        redo = BatchUnitOfWork(restarted.events)
        assert restarted.events.position("ingest:p0") == 5
        redelivered = items(*first[5:], *second)  # offsets 5..10: one already stored
        result = redo.process(redelivered, position=Position("ingest:p0", 10, after=5))
        assert (result.accepted, result.duplicate) == (5, 1)
        again = redo.process(items(*second), position=Position("ingest:p0", 15, after=10))
        assert (again.accepted, again.duplicate) == (0, 5)
    finally:
        restarted.close()
    kept = stores.events.load(aggregate_id("ws1", "c2"))
    assert [e.source_event_id for e in kept  # type: ignore[attr-defined]
            if type(e).__name__ == "MessageReceived"] == [e["event_id"] for e in second]
    assert [e.aggregate_version for e in kept] == list(range(1, len(kept) + 1))
    assert stored_ids(stores) == sorted(set(stored_ids(stores)))


def test_a_schema_without_the_commit_function_gets_it_when_opened(postgres_url: str) -> None:
    """Tables made by a version before the commit function: opening adds it."""
    first = open_postgres_stores(postgres_url)
    recorder = first.events.recorder  # type: ignore[attr-defined]
    with first.events.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
        curs.execute(f"DROP FUNCTION {recorder.commit_function}")
    with pytest.raises(ProgrammingError, match=pg_recorder.COMMIT_FUNCTION_NAME):  # gone: no commit
        first.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [], None)
    first.close()
    again = open_postgres_stores(postgres_url)
    try:
        again.events.commit([opened("c1", 1, "k1")], [outcome("e1")], [], None)
        assert again.events.seen({("ws1", "e1")}) == {("ws1", "e1")}
        with pytest.raises(ConcurrencyConflict):  # and it refuses a taken version
            again.events.commit([opened("c1", 1, "k2")], [outcome("e2")], [], None)
    finally:
        again.close()
