"""A batch's store read issued before it is decided: only what is still true is used.

The Kafka service reads fetch N+1's dedupe keys, uncached contacts and settings
while fetch N is decided (``BatchUnitOfWork.read_ahead``); between the read and
N+1's decision, N is decided, stored and settled, and the cache changes. Each
test here builds one such interleaving where the answer read ahead has become
false, and fails if the decision used it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from fakes import FakeEventStore

from schemas.commands import CommandBase
from schemas.events import DomainEvent
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import Invalid, parse
from tests.unit.harness import ev, line


def items(*envelopes: dict[str, object]) -> list[CommandBase | Invalid]:
    return [parse(line(e)) for e in envelopes]


class CountingStore(FakeEventStore):
    """Counts the reads the processor makes and the conflicts it meets."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        self.reads += 1
        return super().seen(keys)

    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        self.reads += 1
        return super().load_many(originator_ids)


def test_a_read_ahead_answers_the_decision_without_another_read() -> None:
    store = CountingStore()
    uow = BatchUnitOfWork(store)
    uow.process(items(ev("message.received", event_id="old", contact="c1")))
    later = BatchUnitOfWork(store)  # a fresh cache: c1 is not cached
    batch = items(ev("message.received", event_id="old", contact="c1"),
                  ev("message.received", event_id="new", contact="c1", t=5))
    ahead = later.read_ahead(batch)
    store.reads = 0
    decision = later.decide(batch, "import", ahead=ahead)
    assert store.reads == 0
    assert (decision.result.duplicate, decision.result.accepted) == (1, 1)
    assert [e.aggregate_version for e in decision.events] == [3]  # after c1's two
    later.commit(decision)
    assert store.conflicts == 0


def test_a_key_settled_between_the_read_and_the_decision_is_a_duplicate() -> None:
    store = CountingStore()
    uow = BatchUnitOfWork(store)
    first = items(ev("message.received", event_id="k", contact="c1"))
    second = items(ev("message.received", event_id="k", contact="c1"),
                   ev("message.received", event_id="other", contact="c2", t=1))
    ahead = uow.read_ahead(second)  # "k" is not stored yet
    uow.commit(uow.decide(first, "import"))  # stored and settled: no longer in flight
    decision = uow.decide(second, "import", ahead=ahead)
    assert (decision.result.duplicate, decision.result.accepted) == (1, 1)
    uow.commit(decision)
    assert store.conflicts == 0 and len(store.outcomes) == 2


def test_a_key_still_in_flight_is_a_duplicate() -> None:
    uow = BatchUnitOfWork(CountingStore())
    first = items(ev("message.received", event_id="k", contact="c1"))
    ahead = uow.read_ahead(first)
    uow.decide(first, "import")  # in flight, not stored
    again = uow.decide(first, "import", ahead=ahead)
    assert (again.result.duplicate, again.result.accepted) == (1, 0)


def test_a_contact_cached_since_the_read_is_not_replaced_by_it() -> None:
    store = CountingStore()
    uow = BatchUnitOfWork(store)
    second = items(ev("message.sent", event_id="b", contact="c1", t=5))
    ahead = uow.read_ahead(second)  # c1: no events
    first = uow.decide(items(ev("message.received", event_id="a", contact="c1")), "import")
    decision = uow.decide(second, "import", ahead=ahead)  # c1 has unsaved events now
    assert [e.aggregate_version for e in decision.events] == [3]  # opened, received, sent
    uow.commit(first)
    uow.commit(decision)
    assert store.conflicts == 0


def test_a_contact_evicted_since_the_read_is_read_again() -> None:
    store = CountingStore()
    uow = BatchUnitOfWork(store, cache_size=1)
    third = items(ev("message.sent", event_id="c", contact="c1", t=9))
    ahead = uow.read_ahead(third)  # c1: no events
    uow.commit(uow.decide(items(ev("message.received", event_id="a", contact="c1")),
                          "import"))  # c1 stored at versions 1-2
    uow.commit(uow.decide(items(ev("message.received", event_id="b", contact="c2", t=1)),
                          "import"))  # evicts c1 (cache of one)
    assert ("ws1", "c1") not in uow.processor._cache
    decision = uow.decide(third, "import", ahead=ahead)
    assert [e.aggregate_version for e in decision.events] == [3]
    uow.commit(decision)
    assert store.conflicts == 0


def test_a_contact_cached_at_the_read_and_evicted_since_is_loaded_when_used() -> None:
    store = CountingStore()
    uow = BatchUnitOfWork(store, cache_size=1)
    uow.commit(uow.decide(items(ev("message.received", event_id="a", contact="c1")),
                          "import"))  # c1 cached, stored at versions 1-2
    third = items(ev("message.sent", event_id="c", contact="c1", t=9))
    ahead = uow.read_ahead(third)  # c1 cached: not asked
    uow.commit(uow.decide(items(ev("message.received", event_id="b", contact="c2", t=1)),
                          "import"))  # evicts c1
    decision = uow.decide(third, "import", ahead=ahead)
    assert [e.aggregate_version for e in decision.events] == [3]
    uow.commit(decision)
    assert store.conflicts == 0


def test_a_read_ahead_of_other_items_is_not_used() -> None:
    store = CountingStore()
    uow = BatchUnitOfWork(store)
    uow.process(items(ev("message.received", event_id="k", contact="c1")))
    ahead = uow.read_ahead(items(ev("message.received", event_id="x", contact="c9")))
    decision = uow.decide(items(ev("message.received", event_id="k", contact="c1")), "import",
                          ahead=ahead)
    assert (decision.result.duplicate, decision.result.accepted) == (1, 0)


def test_a_read_ahead_is_void_once_the_processor_forgets() -> None:
    store = CountingStore()
    uow = BatchUnitOfWork(store)
    batch = items(ev("message.received", event_id="k", contact="c1"))
    ahead = uow.read_ahead(batch)  # nothing stored yet
    # another copy of the service stores "k" and c1; ours fails a commit and forgets
    BatchUnitOfWork(store).process(items(ev("message.received", event_id="k", contact="c1")))
    uow.forget()
    decision = uow.decide(batch, "import", ahead=ahead)
    assert (decision.result.duplicate, decision.result.accepted) == (1, 0)


def test_a_dropped_read_ahead_is_no_longer_kept_up_to_date() -> None:
    uow = BatchUnitOfWork(CountingStore())
    ahead = uow.read_ahead(items(ev("message.received", event_id="k")))
    uow.drop_ahead(ahead)
    uow.commit(uow.decide(items(ev("message.received", event_id="x")), "import"))
    assert ahead.settled == set()
    assert uow.processor._aheads._open == []
