"""The embedded pipeline (services/in_process/pipeline.py) on the fakes: import semantics of
CONTRACT §4 and read models that stay equal to a replay, also when two
pipelines (two ``bonychat`` processes, or ``serve`` and an import) share a store.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import FakeEventStore, FakeReadModelStore

from services.in_process.pipeline import EmbeddedPipeline, batched
from services.projections.application.projector import ConversationProjection

from .harness import ev, line


def lines(*envelopes: dict[str, Any] | str) -> list[bytes]:
    return [line(e).encode() for e in envelopes]


def rows(store: FakeReadModelStore, ws: str = "ws1") -> list[dict[str, Any]]:
    return [r.public() for r in store.conversations(ws)]


def replayed(events: FakeEventStore, ws: str = "ws1") -> list[dict[str, Any]]:
    fresh = FakeReadModelStore()
    ConversationProjection(fresh).replay(events)
    return rows(fresh, ws)


def test_batched_skips_blank_lines_and_strips_line_ends() -> None:
    raw = [b"a\n", b"\n", b"  \t\r\n", b"b\r\n", b"c", b"d\n", b"e\n"]
    assert list(batched(raw, 2)) == [[b"a", b"b"], [b"c", b"d"], [b"e"]]
    assert list(batched([b"\n", b" "], 5)) == []


def test_summary_counts_every_non_blank_line_once() -> None:
    events, read_models = FakeEventStore(), FakeReadModelStore()
    pipeline = EmbeddedPipeline(events, read_models, batch_size=2)
    received = ev("message.received", event_id="e1")
    summary = pipeline.run([*lines(received, "x", ev("conversation.close", t=1), received,
                                   ev("welcome", t=2, channel="sms")), b"\n", b"  "])
    assert summary.as_dict() == {"read": 5, "accepted": 2, "duplicate": 1,
                                 "rejected": {"welcome_not_supported": 1}, "invalid": 1}
    assert list(summary.as_dict()) == ["read", "accepted", "duplicate", "rejected", "invalid"]
    assert json.dumps(summary.as_dict())  # plain JSON types only


def test_rejected_reasons_are_sorted_and_absent_when_none() -> None:
    pipeline = EmbeddedPipeline(FakeEventStore(), FakeReadModelStore())
    summary = pipeline.run(lines(ev("welcome", channel="sms"), ev("conversation.close", t=1),
                                 ev("contact.merge", data={"secondary_contact_id": "c1"})))
    assert list(summary.as_dict()["rejected"]) == ["invalid_merge", "no_open_conversation",
                                                   "welcome_not_supported"]
    assert EmbeddedPipeline(FakeEventStore(), FakeReadModelStore()).run([]).as_dict()[
        "rejected"] == {}


def test_a_crash_between_the_two_commits_is_repaired_at_the_next_start() -> None:
    events, read_models = FakeEventStore(), FakeReadModelStore()
    pipeline = EmbeddedPipeline(events, read_models)
    read_models.fail_next_save = OSError("killed")
    with pytest.raises(OSError):
        pipeline.run(lines(ev("message.received")))
    assert rows(read_models) == []
    EmbeddedPipeline(events, read_models).run([])
    assert rows(read_models) == replayed(events) != []


def test_two_pipelines_on_one_store_keep_the_read_model_equal_to_a_replay() -> None:
    events, read_models = FakeEventStore(), FakeReadModelStore()
    first = EmbeddedPipeline(events, read_models)
    second = EmbeddedPipeline(events, read_models)
    first.run(lines(ev("message.received", t=0)))
    second.run(lines(ev("message.received", t=1)))
    first.run(lines(ev("message.received", t=2)))
    second.run(lines(ev("conversation.assign", t=3, data={"assignee_id": "ann"})))
    first.run(lines(ev("message.sent", t=4)))
    assert rows(read_models) == replayed(events)
    row = rows(read_models)[0]
    assert (row["messages_received"], row["messages_sent"], row["assignee_id"]) == (3, 1, "ann")


def test_a_pipeline_whose_position_was_overtaken_catches_up_instead_of_failing() -> None:
    events, read_models = FakeEventStore(), FakeReadModelStore()
    mine = EmbeddedPipeline(events, read_models)
    mine.run(lines(ev("message.received", t=0)))
    # another process stores and projects events while ``mine`` stays alive
    other = EmbeddedPipeline(events, read_models)
    other.run(lines(ev("message.received", t=1, contact="c2")))
    result = mine.process_batch([line(ev("message.received", t=2)).encode()])
    assert result.accepted == 1
    assert rows(read_models) == replayed(events)
    assert rows(read_models, "ws1")[0]["messages_received"] == 2


def test_a_pipeline_projected_over_by_another_recovers_and_stays_equal_to_a_replay() -> None:
    events, read_models = FakeEventStore(), FakeReadModelStore()
    slow = EmbeddedPipeline(events, read_models)
    fast = EmbeddedPipeline(events, read_models)
    slow.run(lines(ev("message.received", t=0)))
    fast.run([])
    # between ``slow`` committing and projecting, ``fast`` commits and projects both
    events.after_next_commit = lambda: fast.process_batch(
        [line(ev("message.received", t=2)).encode()])
    result = slow.process_batch([line(ev("message.sent", t=1)).encode()])
    assert result.accepted == 1
    assert rows(read_models) == replayed(events)
    assert (rows(read_models)[0]["messages_received"], rows(read_models)[0]["messages_sent"]) == (
        2, 1)
    slow.process_batch([line(ev("conversation.close", t=3)).encode()])
    fast.process_batch([line(ev("message.received", t=4)).encode()])
    assert rows(read_models) == replayed(events)
    assert [r["status"] for r in rows(read_models)] == ["closed", "open"]
