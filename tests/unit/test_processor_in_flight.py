"""Decisions in flight: decided, not yet stored (by the unit of work or the writer process)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from fakes import FakeEventStore

from schemas.events import DomainEvent
from services.conversation.application.ports import (
    StoredKeys,
)
from services.conversation.application.processor import BatchProcessor
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.domain.contact import aggregate_id
from services.conversation.domain.workspace import settings_id
from services.ingest.domain.normalise import parse
from tests.unit.harness import ev, line


def items(*envelopes: dict[str, object]) -> list[object]:
    return [parse(line(e)) for e in envelopes]


def test_keys_in_flight_count_as_seen_until_settled() -> None:
    store = FakeEventStore()
    processor = BatchUnitOfWork(store)
    first = ev("message.received", event_id="e1")
    a = processor.decide(items(first), "import")  # type: ignore[arg-type]
    b = processor.decide(items(first), "import")  # type: ignore[arg-type]
    assert (a.result.accepted, b.result.duplicate) == (1, 1)
    processor.commit(a)
    processor.settle(b)
    # stored now: the store itself says it was seen
    c = processor.decide(items(first), "import")  # type: ignore[arg-type]
    assert c.result.duplicate == 1


def test_without_in_flight_an_undecided_key_is_not_remembered() -> None:
    processor = BatchProcessor(FakeEventStore())
    first = ev("message.received", event_id="e1")
    processor.decide(items(first), "import")  # type: ignore[arg-type]
    processor.forget()  # never stored
    again = processor.decide(items(first), "import")  # type: ignore[arg-type]
    assert again.result.accepted == 1


def test_aggregates_in_flight_or_being_decided_are_not_evicted() -> None:
    store = FakeEventStore()
    processor = BatchUnitOfWork(store, cache_size=1)
    batch = [ev("message.received", contact=f"c{i}", t=i) for i in range(5)]
    batch.append(ev("message.received", contact="c0", t=9))  # c0 again, same batch
    decided = processor.decide(items(*batch), "import")  # type: ignore[arg-type]
    versions = [e.aggregate_version for e in decided.events if e.contact_id == "c0"]
    assert versions == [1, 2, 3]  # opened, received, received: c0 was not reloaded
    # a second batch for the same contacts, decided before the first is stored
    later = processor.decide(
        items(ev("conversation.close", contact="c1", t=20)), "import")  # type: ignore[arg-type]
    assert [e.aggregate_version for e in later.events] == [3]
    processor.commit(decided)
    processor.commit(later)  # FakeEventStore refuses a version taken twice
    assert len(processor.processor._cache) <= 2


class CountingStore(FakeEventStore):
    """Counts what the processor asks the store."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_keys: list[tuple[str, str]] = []
        self.asked_aggregates: list[object] = []

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        self.asked_keys.extend(keys)
        return super().seen(keys)

    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        # the workspace settings are read for every batch (CONTRACT §6.1): not counted
        self.asked_aggregates.extend(o for o in originator_ids if o != settings_id("ws1"))
        return super().load_many(originator_ids)


def test_with_stored_keys_only_what_may_be_stored_is_asked() -> None:
    store = CountingStore()
    seeded = BatchUnitOfWork(store)
    seeded.process(items(ev("message.received", event_id="old", contact="c1")))  # type: ignore[arg-type]
    processor = BatchUnitOfWork(store)
    processor.assume_stored(StoredKeys({hash(("ws1", "old"))}, {aggregate_id("ws1", "c1")}))
    store.asked_keys.clear()
    store.asked_aggregates.clear()
    batch = items(ev("message.received", event_id="old", contact="c1"),
                  ev("message.received", event_id="new", contact="c1", t=5),
                  ev("message.received", event_id="other", contact="c2", t=6))
    decided = processor.decide(batch, "import")  # type: ignore[arg-type]
    assert store.asked_keys == [("ws1", "old")]
    assert store.asked_aggregates == [aggregate_id("ws1", "c1")]
    assert (decided.result.duplicate, decided.result.accepted) == (1, 2)
    # c1 was loaded with its stored events: its next event follows them
    assert [e.aggregate_version for e in decided.events if e.contact_id == "c1"] == [3]
    processor.commit(decided)
    # what this processor stored is "maybe stored" now: asked, and found
    store.asked_keys.clear()
    again = processor.decide(items(ev("message.sent", event_id="new", contact="c1")),  # type: ignore[arg-type]
                             "import")
    assert store.asked_keys == [("ws1", "new")] and again.result.duplicate == 1


def test_evicted_aggregates_are_asked_for_again() -> None:
    store = CountingStore()
    processor = BatchUnitOfWork(store, cache_size=1)
    processor.assume_stored(StoredKeys(set(), set()))
    for i, contact in enumerate(["c1", "c2", "c1"]):
        processor.process(items(ev("message.received", event_id=f"e{i}", contact=contact, t=i)))  # type: ignore[arg-type]
    # c1 was evicted by c2 after it had stored events: it is loaded, not started afresh
    assert aggregate_id("ws1", "c1") in store.asked_aggregates
    assert store.conflicts == 0
    assert [e.aggregate_version for e in store.load(aggregate_id("ws1", "c1"))] == [1, 2, 3]


def test_forget_drops_the_stored_keys() -> None:
    store = CountingStore()
    BatchUnitOfWork(store).process(items(ev("message.received", event_id="x")))  # type: ignore[arg-type]
    processor = BatchUnitOfWork(store)
    processor.assume_stored(StoredKeys(set(), set()))  # stale: misses "x"
    processor.forget()
    result = processor.process(items(ev("message.received", event_id="x")))  # type: ignore[arg-type]
    assert result.duplicate == 1 and store.conflicts == 0


def test_a_stale_snapshot_ends_in_a_conflict_not_in_a_double_count() -> None:
    store = CountingStore()
    BatchUnitOfWork(store).process(items(ev("message.received", event_id="x")))  # type: ignore[arg-type]
    processor = BatchUnitOfWork(store)
    processor.assume_stored(StoredKeys(set(), set()))  # stale: misses "x" and c1
    result = processor.process(items(ev("message.received", event_id="x")))  # type: ignore[arg-type]
    assert store.conflicts == 1  # refused by the store, then redone from it
    assert result.duplicate == 1 and result.accepted == 0


def test_stored_keys_past_their_limit_are_dropped() -> None:
    store = CountingStore()
    processor = BatchUnitOfWork(store)
    processor.assume_stored(StoredKeys(set(), set()), limit=2)
    processor.process(items(*(ev("message.received", event_id=f"e{i}", t=i) for i in range(3))))  # type: ignore[arg-type]
    store.asked_keys.clear()
    processor.process(items(ev("message.received", event_id="e9", t=9)))  # type: ignore[arg-type]
    assert store.asked_keys == [("ws1", "e9")]  # no snapshot any more: the store is asked


def test_a_settled_decision_leaves_the_aggregates_of_another_one_in_flight_cached() -> None:
    store = CountingStore()
    processor = BatchUnitOfWork(store, cache_size=1)
    first = processor.decide(items(ev("message.received", event_id="a", contact="c1"),  # type: ignore[arg-type]
                                   ev("message.received", event_id="b", contact="c2", t=1)),
                             "import")
    second = processor.decide(items(ev("message.sent", event_id="c", contact="c1", t=2)),  # type: ignore[arg-type]
                              "import")
    processor.commit(first)  # settled: c2 may go, c1 is still in flight with `second`
    processor.decide(items(*(ev("message.received", event_id=f"x{i}", contact=f"o{i}", t=3 + i)  # type: ignore[arg-type]
                             for i in range(3))), "import")
    assert ("ws1", "c1") in processor.processor._cache
    assert ("ws1", "c2") not in processor.processor._cache
    # c1 continues from `second` (not reloaded from storage, which lacks it)
    third = processor.decide(items(ev("message.received", event_id="d", contact="c1", t=9)),  # type: ignore[arg-type]
                             "import")
    assert [e.aggregate_version for e in third.events] == [4]
    processor.commit(second)
    processor.commit(third)
    assert store.conflicts == 0
