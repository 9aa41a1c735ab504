"""Decisions in flight: decided, handed to another process to store, not yet stored."""

from __future__ import annotations

from fakes import FakeEventStore

from services.conversation.processor import BatchProcessor
from services.ingest.normalise import parse

from .harness import ev, line


def items(*envelopes: dict[str, object]) -> list[object]:
    return [parse(line(e)) for e in envelopes]


def test_keys_in_flight_count_as_seen_until_settled() -> None:
    store = FakeEventStore()
    processor = BatchProcessor(store)
    first = ev("message.received", event_id="e1")
    a = processor.decide(items(first), "import", in_flight=True)  # type: ignore[arg-type]
    b = processor.decide(items(first), "import", in_flight=True)  # type: ignore[arg-type]
    assert (a.result.accepted, b.result.duplicate) == (1, 1)
    processor.commit(a)
    processor.settle(a)
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
    processor = BatchProcessor(store, cache_size=1)
    batch = [ev("message.received", contact=f"c{i}", t=i) for i in range(5)]
    batch.append(ev("message.received", contact="c0", t=9))  # c0 again, same batch
    decided = processor.decide(items(*batch), "import", in_flight=True)  # type: ignore[arg-type]
    versions = [e.aggregate_version for e in decided.events if e.contact_id == "c0"]
    assert versions == [1, 2, 3]  # opened, received, received: c0 was not reloaded
    # a second batch for the same contacts, decided before the first is stored
    later = processor.decide(
        items(ev("conversation.close", contact="c1", t=20)), "import", in_flight=True)  # type: ignore[arg-type]
    assert [e.aggregate_version for e in later.events] == [3]
    processor.commit(decided)
    processor.commit(later)  # FakeEventStore refuses a version taken twice
    processor.settle(decided)
    processor.settle(later)
    assert len(processor._cache) <= 2
