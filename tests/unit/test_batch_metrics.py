"""The conversation batch's counters (``RuntimeMetrics.count_batch``): outcomes,
duplicates and invalid inputs by gateway event type, as the services export them."""

from __future__ import annotations

from typing import Any

from services.ingest.domain.normalise import parse
from services.runtime.observability import RuntimeMetrics, tally_ingest

from .harness import World, ev, line


def counts(metrics: RuntimeMetrics) -> dict[tuple[str, str], float]:
    return {(s.labels["type"], s.labels["outcome"]): s.value
            for family in metrics.registry.collect() if family.name == "bonychat_events"
            for s in family.samples if s.name.endswith("_total")
            and s.labels["service"] == "conversation"}


def test_a_batch_is_counted_by_event_type_and_outcome() -> None:
    world = World()
    world.send(ev("message.received", "c1", 0, event_id="a"),
               ev("message.sent", "c1", 1, event_id="b"))
    again: list[dict[str, Any] | str] = [
        ev("message.received", "c1", 0, event_id="a"),  # duplicates of both kinds
        ev("message.sent", "c1", 1, event_id="b"), ev("message.sent", "c1", 1, event_id="b"),
        ev("message.received", "c1", 2, event_id="c"),
        ev("conversation.close", "c2", 3, event_id="d"),  # nothing open: rejected
        "{not json"]
    items = [parse(line(e)) for e in again]
    result = world.uow.process(items, "commands")
    metrics = RuntimeMetrics()
    metrics.count_batch(items, result, "commands")
    assert counts(metrics) == {
        ("message.received", "accepted"): 1, ("message.received", "duplicate"): 1,
        ("message.sent", "duplicate"): 2, ("conversation.close", "rejected"): 1,
        ("unknown", "invalid"): 1}
    assert result.duplicate == 3


def test_ingest_counts_what_it_forwarded_by_event_type() -> None:
    items = [parse(line(e)) for e in (ev("message.received"), ev("message.received"),
                                       ev("message.sent"), "{not json", "[]")]
    metrics = RuntimeMetrics()
    metrics.count_ingest(items, "kafka")
    forwarded = {(s.labels["service"], s.labels["type"], s.labels["outcome"]): s.value
                 for family in metrics.registry.collect() if family.name == "bonychat_events"
                 for s in family.samples if s.name.endswith("_total")}
    assert forwarded == {("ingest", "message.received", "forwarded"): 2,
                         ("ingest", "message.sent", "forwarded"): 1,
                         ("ingest", "unknown", "invalid"): 2}


def test_the_tally_is_the_same_with_and_without_invalid_items() -> None:
    """Tallied in C with or without invalid items (counted apart, never as a type):
    the same counts either way, however many invalid items and wherever they are."""
    commands = [parse(line(e)) for e in (ev("message.received"), ev("message.sent"),
                                          ev("message.received"), ev("welcome"))]
    kinds, invalid = tally_ingest(commands)
    assert kinds == {"message.received": 2, "message.sent": 1, "welcome": 1} and invalid == 0
    mixed = [*commands[:2], parse("{not json"), *commands[2:], parse("[]")]
    assert tally_ingest(mixed) == (kinds, 2)
    assert None not in tally_ingest(mixed)[0]
    invalid_only = [parse("{not json"), parse("[]")]
    assert tally_ingest(invalid_only) == ({}, 2)
    assert tally_ingest([]) == ({}, 0)
