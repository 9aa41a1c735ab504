"""CONTRACT §6, one test per rule that can fail (the property tests cover the rest)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.conversation.application.workspaces import SettingsChange, change_settings
from services.projections.domain.metrics import MetricsQuery, compute

from .harness import World, ev, merge

HOUR = 60.0  # minutes


def world(timeout: int | None = None) -> World:
    w = World()
    if timeout is not None:
        change_settings(w.events, "ws1", {"inactivity_timeout_seconds": timeout},
                        SettingsChange("test"))
    return w


def rows(w: World, contact: str | None = None) -> list[dict[str, Any]]:
    return [r.public() for r in w.read_models.conversations("ws1", contact)]


def metrics(w: World, group_by: str = "day", **kw: Any) -> dict[str, Any]:
    query = MetricsQuery("ws1", group_by, "UTC", kw.get("low"), kw.get("high"))
    return compute(query, w.read_models.facts("ws1"))


# ------------------------------------------------------------ §6.2 first response
def test_first_message_is_the_first_received_counted() -> None:
    w = world()
    w.send(ev("conversation.open", t=0), ev("message.received", t=5),
           ev("message.received", t=3))
    (row,) = rows(w)
    assert row["first_message_at"] == "2026-11-24T10:05:00Z"  # arrival order, not time


def test_bot_and_automation_replies_are_not_first_responses() -> None:
    w = world()
    w.send(ev("message.received", t=0), ev("message.sent", t=1, actor="automation"),
           ev("message.sent", t=2, actor="dialogflow"),
           ev("message.sent", t=7, actor=("user", "ann")),
           ev("message.sent", t=9, actor=("user", "bob")))
    (row,) = rows(w)
    assert (row["first_response_at"], row["first_responder_id"],
            row["first_response_seconds"]) == ("2026-11-24T10:07:00Z", "ann", 420.0)


def test_a_reply_before_the_first_inbound_message_is_not_a_first_response() -> None:
    w = world()
    w.send(ev("conversation.open", t=0), ev("message.sent", t=1),
           ev("message.received", t=2), ev("message.sent", t=4, actor=("user", "ann")))
    (row,) = rows(w)
    assert row["first_response_at"] == "2026-11-24T10:04:00Z"


def test_first_response_seconds_is_never_negative_and_null_without_a_response() -> None:
    w = world()
    w.send(ev("message.received", "c1", t=10), ev("message.sent", "c1", t=5),
           ev("message.received", "c2", t=0))
    c1, c2 = (rows(w, c)[0] for c in ("c1", "c2"))
    assert c1["first_response_seconds"] == 0.0
    assert c2["first_response_seconds"] is None and c2["first_response_at"] is None


# ----------------------------------------------------------- §6.4 auto-close
def test_the_next_event_closes_an_expired_conversation_first() -> None:
    w = world(3600)
    w.send(ev("message.received", t=0), ev("message.sent", t=30))
    outcomes = w.send(ev("message.received", t=30 + HOUR))  # exactly last activity + T
    assert outcomes == ["accepted"]
    first, second = rows(w)
    assert (first["closed_by"], first["closed_at"], first["closed_by_actor"]) == (
        "inactivity", "2026-11-24T11:30:00Z", None)
    assert second["status"] == "open" and second["recontact"] is True


def test_a_close_after_expiry_is_rejected_no_open_conversation() -> None:
    w = world(3600)
    w.send(ev("message.received", t=0))
    assert w.send(ev("conversation.close", t=2 * HOUR)) == ["rejected:no_open_conversation"]
    assert rows(w)[0]["closed_by"] == "inactivity"


def test_an_event_before_the_deadline_closes_nothing() -> None:
    w = world(3600)
    w.send(ev("message.received", t=0), ev("conversation.assign", t=HOUR - 1))
    assert rows(w)[0]["status"] == "open"


def test_assignment_is_not_activity_but_messages_are_by_occurred_at() -> None:
    w = world(3600)
    w.send(ev("message.received", t=0), ev("conversation.assign", t=50),
           ev("message.sent", t=40), ev("message.sent", t=20))
    assert rows(w)[0]["last_activity_at"] == "2026-11-24T10:40:00Z"
    w.send(ev("dialogflow.response", t=100))
    assert rows(w)[0]["closed_at"] == "2026-11-24T11:40:00Z"


def test_a_merge_expires_both_contacts_first() -> None:
    w = world(3600)
    w.send(ev("message.received", "p", t=0), ev("message.received", "s", t=0))
    w.send(merge("p", "s", t=2 * HOUR))
    closed = {r["contact_id"]: r["closed_by"] for r in rows(w)}
    assert closed == {"p": "inactivity", "s": "inactivity"}


def test_without_a_timeout_nothing_expires() -> None:
    w = world()
    w.send(ev("message.received", t=0), ev("message.received", t=10_000))
    assert len(rows(w)) == 1


# ------------------------------------------------------------- §6.5 re-contacts
@pytest.mark.parametrize(("gap_minutes", "recontact"), [(0, True), (24 * HOUR, True),
                                                         (24 * HOUR + 1 / 60, False)])
def test_recontact_window_is_24_hours_up_to_the_opening(gap_minutes: float,
                                                       recontact: bool) -> None:
    w = world()
    w.send(ev("message.received", t=0), ev("conversation.close", t=10),
           ev("message.received", t=10 + gap_minutes))
    assert rows(w)[1]["recontact"] is recontact


def test_merge_closings_are_not_recontacts_but_merged_history_is() -> None:
    w = world()
    w.send(ev("message.received", "s", t=0), merge("p", "s", t=5),
           ev("message.received", "p", t=10))
    assert [r["recontact"] for r in rows(w, "p")] == [False]
    w.send(ev("message.received", "x", t=20), ev("conversation.close", "x", t=25),
           ev("conversation.close", "p", t=26), merge("p", "x", t=30),
           ev("message.received", "p", t=40))
    assert rows(w, "p")[-1]["recontact"] is True


def test_inactivity_closings_count_for_recontacts() -> None:
    w = world(600)
    w.send(ev("message.received", t=0), ev("message.received", t=60))
    assert [r["recontact"] for r in rows(w)] == [False, True]


# ---------------------------------------------------------------- §6.6 metrics
def test_inactivity_and_merge_closings_are_closed_but_not_resolved() -> None:
    w = world(600)
    w.send(ev("message.received", "a", t=0), ev("message.received", "a", t=60),
           ev("message.received", "b", t=0), ev("conversation.close", "b", t=5))
    total = metrics(w)["total"]
    assert total["closed"] == 2
    assert total["resolution_seconds"]["count"] == 1
    assert total["resolution_business_seconds"]["count"] == 1


def test_first_responses_are_bucketed_by_their_own_day_and_make_a_row() -> None:
    w = world()
    w.send(ev("message.received", t=0), ev("message.sent", t=24 * HOUR))
    result = metrics(w)
    assert [(r["key"], r["opened"], r["closed"], r["first_response_seconds"]["count"])
            for r in result["rows"]] == [("2026-11-24", 1, 0, 0), ("2026-11-25", 0, 0, 1)]
    ranged = metrics(w, low=date(2026, 11, 25), high=date(2026, 11, 25))
    assert ranged["total"]["first_response_seconds"]["count"] == 1
    assert ranged["total"]["opened"] == 0


def test_closed_by_rows_hold_closed_conversations_only() -> None:
    w = world()
    w.send(ev("message.received", "a", t=0), ev("message.sent", "a", t=1),
           ev("message.received", "b", t=0), ev("message.sent", "b", t=2),
           ev("conversation.close", "b", t=3))
    result = metrics(w, "closed_by")
    assert [(r["key"], r["first_response_seconds"]["count"], r["recontacts"])
            for r in result["rows"]] == [("user", 1, None)]
    assert result["total"]["first_response_seconds"]["count"] == 2


def test_assignee_rows_use_the_current_assignee_while_open() -> None:
    w = world()
    w.send(ev("message.received", t=0), ev("conversation.assign", t=1,
                                           data={"assignee_id": "ann"}),
           ev("message.sent", t=2))
    result = metrics(w, "assignee")
    assert [(r["key"], r["first_response_seconds"]["count"]) for r in result["rows"]] == [
        ("ann", 1)]


def test_recontacts_are_counted_like_opened() -> None:
    w = world()
    w.send(ev("message.received", t=0), ev("conversation.close", t=1),
           ev("message.received", t=2))
    assert [(r["key"], r["opened"], r["recontacts"]) for r in metrics(w, "channel")["rows"]] == [
        ("whatsapp", 2, 1)]
    assert metrics(w)["total"]["recontacts"] == 1
