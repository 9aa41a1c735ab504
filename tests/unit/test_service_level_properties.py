"""Property tests of the service levels (CONTRACT §6) on random streams.

The same random streams as :mod:`.test_properties`, with an inactivity timeout
set on some workspaces (a ``WorkspaceSettingsChanged`` event in the store, as
``bonychat workspace set`` records it), checked against the naive oracle that
closes expired conversations itself, and against the invariants.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from fakes import FakeReadModelStore
from hypothesis import given
from hypothesis import strategies as st

from schemas.commands import ExpireInactive
from schemas.events import ConversationClosed, MessageSent
from services.conversation.application.workspaces import SettingsChange, change_settings
from services.projections.application.projector import ConversationProjection

from .test_properties import (
    PROPERTY,
    WORKSPACES,
    Oracle,
    System,
    comparable,
    streams,
    valid_lines,
)

TIMEOUTS = st.dictionaries(st.sampled_from(WORKSPACES),
                           st.sampled_from([60, 600, 3600, 6 * 3600, 86_400]), max_size=2)


def with_timeouts(timeouts: dict[str, int], batch_size: int = 2_000) -> System:
    system = System(batch_size=batch_size)
    for ws, seconds in timeouts.items():
        change_settings(system.events, ws, {"inactivity_timeout_seconds": seconds},
                        SettingsChange("test", datetime(2026, 1, 1, tzinfo=UTC)))
    return system


@PROPERTY
@given(streams(), TIMEOUTS)
def test_auto_close_agrees_with_a_naive_reading_of_the_contract(
        lines: list[str], timeouts: dict[str, int]) -> None:
    system = with_timeouts(timeouts)
    summary = system.run(lines)
    oracle = Oracle(timeouts)
    oracle.run(lines, valid_lines(lines))
    expected = dict(oracle.summary, rejected=dict(sorted(oracle.summary["rejected"].items())))
    assert summary.as_dict() == expected
    assert comparable(system.all_rows(), ids=False) == comparable(oracle.rows(), ids=False)


@PROPERTY
@given(streams(), TIMEOUTS, st.integers(1, 7))
def test_auto_close_never_leaves_two_open_conversations(
        lines: list[str], timeouts: dict[str, int], size: int) -> None:
    system = with_timeouts(timeouts, size)
    system.run(lines)
    rows = system.all_rows()
    open_rows = Counter((r["workspace_id"], r["contact_id"]) for r in rows
                        if r["status"] == "open")
    assert all(n == 1 for n in open_rows.values())
    for row in rows:
        timeout = timeouts.get(row["workspace_id"])
        if row["closed_by"] == "inactivity":
            assert timeout is not None
            last = datetime.fromisoformat(row["last_activity_at"])
            closed = datetime.fromisoformat(row["closed_at"])
            assert (closed - last).total_seconds() == timeout
            assert row["closed_by_actor"] is None


@PROPERTY
@given(streams(), TIMEOUTS)
def test_replay_equals_live_with_auto_close(lines: list[str], timeouts: dict[str, int]) -> None:
    system = with_timeouts(timeouts)
    system.run(lines)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    system.pipeline.process_items([
        ExpireInactive(workspace_id=ws, contact_id=c, event_id="sweep:x", event_type="sweep",
                       occurred_at=now)
        for ws in WORKSPACES for c in ("a", "b", "c", "d")])
    live = comparable(system.all_rows())
    if timeouts:
        assert not [r for r in system.all_rows()
                    if r["status"] == "open" and r["workspace_id"] in timeouts]
    fresh = FakeReadModelStore()
    ConversationProjection(fresh).replay(system.events)
    assert comparable([r.public() for ws in WORKSPACES for r in fresh.conversations(ws)]) == live


@PROPERTY
@given(streams())
def test_first_response_is_never_a_bot(lines: list[str]) -> None:
    system = System()
    system.run(lines)
    firsts: dict[str, Any] = {}
    for _, event in system.events.read(0, 1_000_000):
        if isinstance(event, MessageSent) and event.first_response:
            assert event.actor_type == "user"
            assert event.conversation_id not in firsts  # one per conversation
            firsts[event.conversation_id] = event
    for row in system.all_rows():
        first = firsts.get(row["conversation_id"])
        assert (row["first_response_at"] is None) == (first is None)
        if first is not None:
            assert row["first_responder_id"] == first.actor_id
            assert row["first_message_at"] is not None


@PROPERTY
@given(streams(), TIMEOUTS)
def test_a_sweep_twice_closes_once(lines: list[str], timeouts: dict[str, int]) -> None:
    system = with_timeouts(timeouts)
    system.run(lines)
    sweep = [ExpireInactive(workspace_id=ws, contact_id=c, event_id="sweep:y",
                            event_type="sweep", occurred_at=datetime(2027, 1, 1, tzinfo=UTC))
             for ws in WORKSPACES for c in ("a", "b", "c", "d")]
    first = system.pipeline.process_items(sweep)
    second = system.pipeline.process_items(sweep)
    assert second.expired == 0 and not second.events
    assert first.expired == sum(1 for _, e in first.events if isinstance(e, ConversationClosed))
