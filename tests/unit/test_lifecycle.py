"""CONTRACT §2: lifecycle rules, rejections and de-duplication.

Driven through the real BatchProcessor and projection on the in-memory fakes;
each test checks outcomes and the conversation rows of §4.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.domain.errors import REJECTION_REASONS
from services.ingest.domain.normalise import parse
from tests.unit.harness import World, ev, iso, line, merge


@pytest.fixture
def world() -> World:
    return World()


# ------------------------------------------------------------ message.received
def test_received_opens_a_conversation_by_contact_on_the_event_channel(world: World) -> None:
    assert world.one(ev("message.received", t=0, channel={"type": "telegram", "id": "bot1"},
                        data={"message_id": "m1", "text": "hi"})) == "accepted"
    row = world.row()
    assert row["status"] == "open"
    assert (row["opened_by"], row["channel"]) == ("contact", "telegram")
    assert row["opened_at"] == "2026-11-24T10:00:00Z"
    assert (row["messages_received"], row["messages_sent"]) == (1, 0)
    assert row["closed_at"] is row["closed_by"] is row["resolution_seconds"] is None
    assert (row["workspace_id"], row["contact_id"]) == ("ws1", "c1")


def test_received_with_contact_actor_is_the_same(world: World) -> None:
    world.one(ev("message.received", actor=("contact", "c1")))
    assert world.row()["opened_by"] == "contact"


def test_received_messages_are_counted_in_the_open_conversation(world: World) -> None:
    world.send(ev("message.received", t=0), ev("message.received", t=1, channel="sms"),
               ev("message.received", t=2))
    row = world.row()
    assert row["messages_received"] == 3
    assert row["channel"] == "whatsapp"  # the opening event's channel
    assert row["opened_at"] == iso(0)


# ---------------------------------------------------------------- message.sent
def test_sent_never_opens(world: World) -> None:
    assert world.one(ev("message.sent")) == "accepted"
    assert world.rows() == []
    assert not world.contact("c1").is_open


@pytest.mark.parametrize("actor", ["user", "automation", "dialogflow"])
def test_sent_is_counted_in_the_open_conversation(world: World, actor: str) -> None:
    world.send(ev("message.received", t=0), ev("message.sent", t=1, actor=(actor, "x")),
               ev("message.sent", t=2))
    assert (world.row()["messages_received"], world.row()["messages_sent"]) == (1, 2)


def test_sent_after_close_is_accepted_and_not_counted(world: World) -> None:
    outcomes = world.send(ev("message.received", t=0), ev("conversation.close", t=1),
                          ev("message.sent", t=2))
    assert outcomes == ["accepted"] * 3
    assert world.row()["messages_sent"] == 0


# --------------------------------------------------------------------- welcome
@pytest.mark.parametrize("channel", ["facebook", "viber"])
def test_welcome_opens_on_facebook_and_viber(world: World, channel: str) -> None:
    assert world.one(ev("welcome", channel={"type": channel, "id": "p1"})) == "accepted"
    row = world.row()
    assert (row["opened_by"], row["channel"], row["status"]) == ("welcome", channel, "open")
    assert row["messages_received"] == 0


@pytest.mark.parametrize("channel", ["instagram", "whatsapp", "webchat", "line", "telegram",
                                     "sms", "twitter", "wechat", "email", "custom"])
def test_welcome_on_other_channels_is_not_supported(world: World, channel: str) -> None:
    assert world.one(ev("welcome", channel=channel)) == "rejected:welcome_not_supported"
    assert world.rows() == []


def test_welcome_when_open_is_already_open(world: World) -> None:
    world.one(ev("message.received", channel="facebook"))
    assert world.one(ev("welcome", t=1, channel="facebook")) == "rejected:already_open"
    assert world.row()["opened_by"] == "contact"


def test_unsupported_welcome_channel_wins_over_already_open(world: World) -> None:
    world.one(ev("message.received"))
    assert world.one(ev("welcome", t=1, channel="sms")) == "rejected:welcome_not_supported"


@pytest.mark.parametrize("actor", [None, "contact", "user", "automation", "dialogflow",
                                   "system"])
def test_welcome_accepts_any_actor_or_none(world: World, actor: str | None) -> None:
    assert world.one(ev("welcome", actor=actor)) == "accepted"
    assert world.row()["opened_by"] == "welcome"


# ----------------------------------------------------------- conversation.open
@pytest.mark.parametrize("actor", ["user", "automation"])
def test_open_by_actor_type_on_the_event_channel(world: World, actor: str) -> None:
    assert world.one(ev("conversation.open", actor=(actor, "a1"), channel="email")) == "accepted"
    row = world.row()
    assert (row["opened_by"], row["channel"], row["status"]) == (actor, "email", "open")


def test_open_without_channel_and_no_history_has_null_channel(world: World) -> None:
    world.one(ev("conversation.open"))
    assert world.row()["channel"] is None


def test_open_without_channel_takes_the_last_conversations_channel(world: World) -> None:
    world.send(ev("message.received", t=0, channel="line"), ev("conversation.close", t=1),
               ev("message.received", t=2, channel="viber"), ev("conversation.close", t=3),
               ev("conversation.open", t=4))
    assert [r["channel"] for r in world.rows()] == ["line", "viber", "viber"]


def test_open_with_channel_overrides_the_last_channel(world: World) -> None:
    world.send(ev("message.received", t=0, channel="line"), ev("conversation.close", t=1),
               ev("conversation.open", t=2, channel="sms"))
    assert [r["channel"] for r in world.rows()] == ["line", "sms"]


def test_open_falls_back_to_the_last_conversation_even_if_its_channel_was_null(
        world: World) -> None:
    world.send(ev("message.received", t=0, channel="line"), ev("conversation.close", t=1),
               ev("conversation.open", t=2), ev("conversation.close", t=3),
               ev("conversation.open", t=4, channel=None))
    assert [r["channel"] for r in world.rows()] == ["line", "line", "line"]


def test_open_when_open_is_already_open(world: World) -> None:
    world.one(ev("message.received"))
    assert world.one(ev("conversation.open", t=1)) == "rejected:already_open"
    assert len(world.rows()) == 1


# ---------------------------------------------------------- conversation.close
@pytest.mark.parametrize("actor", ["user", "automation", "dialogflow"])
def test_close_by_actor_type(world: World, actor: str) -> None:
    world.one(ev("message.received", t=0))
    outcome = world.one(ev("conversation.close", t=1.5, actor=(actor, "closer-1"),
                           data={"category": "sales", "summary": "sold"}))
    assert outcome == "accepted"
    row = world.row()
    assert row["status"] == "closed"
    assert row["closed_at"] == "2026-11-24T10:01:30Z"
    assert (row["closed_by"], row["closed_by_actor"]) == (actor, "closer-1")
    assert (row["category"], row["summary"]) == ("sales", "sold")
    assert row["resolution_seconds"] == 90.0


def test_close_without_actor_id_has_null_closed_by_actor(world: World) -> None:
    world.send(ev("message.received"), ev("conversation.close", t=1, actor="automation"))
    assert world.row()["closed_by_actor"] is None


def test_close_when_none_open_is_no_open_conversation(world: World) -> None:
    assert world.one(ev("conversation.close")) == "rejected:no_open_conversation"
    world.send(ev("message.received", t=1), ev("conversation.close", t=2))
    assert world.one(ev("conversation.close", t=3)) == "rejected:no_open_conversation"
    assert world.row()["closed_at"] == iso(2)


def test_closed_conversation_never_reopens(world: World) -> None:
    world.send(ev("message.received", t=0), ev("conversation.close", t=1),
               ev("message.received", t=2))
    first, second = world.rows()
    assert first["conversation_id"] != second["conversation_id"]
    assert (first["status"], second["status"]) == ("closed", "open")
    assert (first["messages_received"], second["messages_received"]) == (1, 1)
    assert second["opened_at"] == iso(2)


def test_resolution_is_never_negative(world: World) -> None:
    world.send(ev("message.received", t=10), ev("conversation.close", t=0))
    row = world.row()
    assert row["resolution_seconds"] == 0
    assert row["closed_at"] == iso(0)


def test_resolution_keeps_fractional_seconds(world: World) -> None:
    world.send(ev("message.received", occurred_at="2026-11-24T10:00:00.250Z"),
               ev("conversation.close", occurred_at="2026-11-24T11:00:01.750+01:00"))
    row = world.row()
    assert row["resolution_seconds"] == 1.5
    assert (row["opened_at"], row["closed_at"]) == ("2026-11-24T10:00:00.250000Z",
                                                    "2026-11-24T10:00:01.750000Z")


def test_times_are_reported_in_utc_with_z(world: World) -> None:
    world.send(ev("message.received", occurred_at="2026-11-24T10:00:00+05:30"),
               ev("conversation.close", occurred_at="2026-11-23T23:30:00-05:00"))
    row = world.row()
    assert (row["opened_at"], row["closed_at"]) == ("2026-11-24T04:30:00Z",
                                                    "2026-11-24T04:30:00Z")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "0999-12-31T23:59:59.000001Z",
                                    "1969-12-31T23:59:59.500000Z", "9999-12-31T23:59:59Z"])
def test_times_are_rfc3339_at_the_ends_of_the_calendar(world: World, moment: str) -> None:
    world.send(ev("message.received", occurred_at=moment),
               ev("conversation.close", occurred_at=moment))
    assert (world.row()["opened_at"], world.row()["closed_at"]) == (moment, moment)


# --------------------------------------------------------- conversation.assign
@pytest.mark.parametrize("actor", ["user", "automation", "dialogflow"])
def test_assign_sets_the_assignee(world: World, actor: str) -> None:
    world.one(ev("message.received"))
    assert world.one(ev("conversation.assign", t=1, actor=actor,
                        data={"assignee_id": "agent-9"})) == "accepted"
    assert (world.row()["assignee_id"], world.row()["team_id"]) == ("agent-9", None)


def test_assign_sets_team_only_when_the_key_is_present(world: World) -> None:
    world.send(ev("message.received"),
               ev("conversation.assign", t=1, data={"assignee_id": "a1", "team_id": "t1"}),
               ev("conversation.assign", t=2, data={"assignee_id": "a2"}))
    assert (world.row()["assignee_id"], world.row()["team_id"]) == ("a2", "t1")
    world.one(ev("conversation.assign", t=3, data={"assignee_id": "a3", "team_id": None}))
    assert (world.row()["assignee_id"], world.row()["team_id"]) == ("a3", None)


def test_assign_null_unassigns(world: World) -> None:
    world.send(ev("message.received"),
               ev("conversation.assign", t=1, data={"assignee_id": "a1", "team_id": "t1"}),
               ev("conversation.assign", t=2, data={"assignee_id": None}))
    assert (world.row()["assignee_id"], world.row()["team_id"]) == (None, "t1")


def test_closing_does_not_unassign(world: World) -> None:
    world.send(ev("message.received"),
               ev("conversation.assign", t=1, data={"assignee_id": "a1", "team_id": "t1"}),
               ev("conversation.close", t=2))
    row = world.row()
    assert (row["status"], row["assignee_id"], row["team_id"]) == ("closed", "a1", "t1")


def test_assign_when_none_open_is_no_open_conversation(world: World) -> None:
    assert world.one(ev("conversation.assign")) == "rejected:no_open_conversation"
    world.send(ev("message.received", t=1),
               ev("conversation.assign", t=2, data={"assignee_id": "a1"}),
               ev("conversation.close", t=3))
    assert world.one(ev("conversation.assign", t=4, data={"assignee_id": "late"})) == (
        "rejected:no_open_conversation")
    assert world.row()["assignee_id"] == "a1"


def test_a_new_conversation_starts_unassigned(world: World) -> None:
    world.send(ev("message.received", t=0),
               ev("conversation.assign", t=1, data={"assignee_id": "a1", "team_id": "t1"}),
               ev("conversation.close", t=2), ev("message.received", t=3))
    assert (world.rows()[1]["assignee_id"], world.rows()[1]["team_id"]) == (None, None)


# ---------------------------------------------------------- dialogflow.response
def markdone(flag: object, t: float = 0, contact: str = "c1", **kw: Any) -> dict[str, Any]:
    return ev("dialogflow.response", contact, t, data={"parameters": {"RB_MARKDONE": flag}},
              **kw)


@pytest.mark.parametrize("flag", [True, "true", "TRUE", "True"])
def test_markdone_true_closes_by_dialogflow(world: World, flag: object) -> None:
    world.one(ev("message.received"))
    assert world.one(markdone(flag, t=2, actor=("dialogflow", "df-1"))) == "accepted"
    row = world.row()
    assert (row["status"], row["closed_by"], row["closed_by_actor"]) == (
        "closed", "dialogflow", "df-1")
    assert row["resolution_seconds"] == 120.0


@pytest.mark.parametrize("flag", [False, "false"])
def test_markdone_false_opens_by_dialogflow(world: World, flag: object) -> None:
    assert world.one(markdone(flag, channel="webchat")) == "accepted"
    row = world.row()
    assert (row["status"], row["opened_by"], row["channel"]) == ("open", "dialogflow",
                                                                 "webchat")


def test_markdone_false_without_channel_takes_the_last_channel(world: World) -> None:
    world.send(ev("message.received", t=0, channel="instagram"), ev("conversation.close", t=1),
               markdone(False, t=2))
    assert [r["channel"] for r in world.rows()] == ["instagram", "instagram"]


def test_markdone_has_the_same_rejections(world: World) -> None:
    assert world.one(markdone(True)) == "rejected:no_open_conversation"
    world.one(ev("message.received", t=1))
    assert world.one(markdone(False, t=2)) == "rejected:already_open"


def test_dialogflow_response_without_markdone_has_no_effect(world: World) -> None:
    assert world.one(ev("dialogflow.response", data={"parameters": {"x": 1}})) == "accepted"
    assert world.rows() == []
    world.one(ev("message.received", t=1))
    assert world.one(ev("dialogflow.response", t=2)) == "accepted"
    assert world.row()["status"] == "open"


# --------------------------------------------------------------- contact.merge
def test_merge_closes_the_secondarys_open_conversation(world: World) -> None:
    world.send(ev("message.received", "B", t=0),
               ev("conversation.assign", "B", t=1, data={"assignee_id": "a1"}))
    assert world.one(merge("A", "B", t=5, actor=("user", "u-merger"))) == "accepted"
    row = world.row(contact="B")
    assert (row["status"], row["closed_by"], row["closed_by_actor"]) == ("closed", "merge", None)
    assert row["closed_at"] == iso(5)
    assert row["resolution_seconds"] == 300.0
    assert row["assignee_id"] == "a1"


def test_merge_leaves_the_primarys_open_conversation_open(world: World) -> None:
    world.send(ev("message.received", "A", t=0), ev("message.received", "B", t=1))
    world.one(merge("A", "B", t=2))
    statuses = {r["contact_id"]: r["status"] for r in world.rows()}
    assert statuses == {"A": "open", "B": "closed"}


def test_merge_of_a_secondary_without_open_conversation(world: World) -> None:
    assert world.one(merge("A", "never-seen")) == "accepted"
    assert world.rows() == []
    world.send(ev("message.received", "B", t=0), ev("conversation.close", "B", t=1))
    assert world.one(merge("A", "B", t=2)) == "accepted"
    assert world.row(contact="B")["closed_by"] == "user"


def test_later_events_for_the_secondary_apply_to_the_primary(world: World) -> None:
    world.send(ev("message.received", "B", t=0), merge("A", "B", t=1))
    assert world.one(ev("message.received", "B", t=2, channel="sms")) == "accepted"
    opened = world.rows(status="open")
    assert [(r["contact_id"], r["channel"]) for r in opened] == [("A", "sms")]
    assert world.send(ev("message.sent", "B", t=3),
                      ev("conversation.assign", "B", t=4, data={"assignee_id": "x"}),
                      ev("conversation.open", "A", t=5),
                      ev("conversation.close", "B", t=6)) == [
        "accepted", "accepted", "rejected:already_open", "accepted"]
    row = world.rows(contact="A")[0]
    assert (row["messages_received"], row["messages_sent"], row["assignee_id"],
            row["status"]) == (1, 1, "x", "closed")
    assert not world.contact("B").is_open
    assert world.contact("B").merged_into == "A"


def test_merge_is_transitive(world: World) -> None:
    world.send(merge("B", "A", t=0), merge("C", "B", t=1))
    world.one(ev("message.received", "A", t=2))
    assert world.row()["contact_id"] == "C"
    assert world.one(ev("conversation.close", "B", t=3)) == "accepted"
    assert world.row()["status"] == "closed"


def test_merge_into_a_merged_primary_uses_its_survivor(world: World) -> None:
    world.send(ev("message.received", "D", t=0), merge("C", "A", t=1))
    assert world.one(merge("A", "D", t=2)) == "accepted"
    assert world.contact("D").merged_into == "C"
    world.one(ev("message.received", "D", t=3))
    assert [r["contact_id"] for r in world.rows(status="open")] == ["C"]


def test_merging_an_already_merged_secondary_is_already_merged(world: World) -> None:
    world.one(merge("A", "B"))
    assert world.one(merge("C", "B", t=1)) == "rejected:already_merged"
    assert world.one(merge("A", "B", t=2)) == "rejected:already_merged"
    assert world.one(merge("B", "B", t=3)) == "rejected:already_merged"
    assert world.contact("B").merged_into == "A"


def test_merging_a_contact_into_itself_is_invalid_merge(world: World) -> None:
    world.one(ev("message.received", "A"))
    assert world.one(merge("A", "A", t=1)) == "rejected:invalid_merge"
    assert world.row()["status"] == "open"


def test_merging_a_survivor_into_its_own_merged_contact_is_invalid_merge(world: World) -> None:
    world.one(merge("A", "B"))
    assert world.one(merge("B", "A", t=1)) == "rejected:invalid_merge"
    world.one(merge("C", "A", t=2))
    assert world.one(merge("B", "C", t=3)) == "rejected:invalid_merge"
    assert world.contact("C").merged_into is None


def test_merge_accepts_any_actor_or_none(world: World) -> None:
    for n, actor in enumerate([None, "contact", "user", "automation", "dialogflow", "system"]):
        assert world.one(merge("P", f"S{n}", t=n, actor=actor)) == "accepted"


def test_merge_never_leaves_two_open_conversations(world: World) -> None:
    world.send(ev("message.received", "A", t=0), ev("message.received", "B", t=1),
               merge("A", "B", t=2), ev("message.received", "B", t=3))
    assert len(world.rows(status="open")) == 1
    assert world.row(contact="A")["messages_received"] == 2


# --------------------------------------------------------------- de-duplication
def test_redelivery_is_a_duplicate_whatever_its_content(world: World) -> None:
    world.one(ev("message.received", event_id="e1"))
    again = ev("conversation.close", "someone-else", t=9, event_id="e1")
    assert world.one(again) == "duplicate"
    assert world.row()["status"] == "open"


def test_duplicates_across_batches(world: World) -> None:
    batch = [ev("message.received", t=0), ev("conversation.close", t=1)]
    assert world.send(*batch) == ["accepted", "accepted"]
    assert world.send(*batch) == ["duplicate", "duplicate"]
    assert len(world.rows()) == 1


def test_duplicates_within_a_batch(world: World) -> None:
    first = ev("message.received", event_id="same")
    assert world.send(first, first, ev("message.received", t=1, event_id="same")) == [
        "accepted", "duplicate", "duplicate"]
    assert world.last is not None and world.last.duplicate == 2
    assert world.row()["messages_received"] == 1


def test_rejected_events_count_for_dedupe(world: World) -> None:
    close = ev("conversation.close", event_id="e-close")
    assert world.one(close) == "rejected:no_open_conversation"
    world.one(ev("message.received", t=1))
    assert world.one(close) == "duplicate"
    assert world.row()["status"] == "open"


def test_invalid_events_do_not_count_for_dedupe(world: World) -> None:
    bad = ev("message.received", event_id="e1", occurred_at="2026-11-24T10:00:00")
    good = ev("message.received", event_id="e1")
    assert world.send(bad, good) == ["invalid", "accepted"]
    assert world.one(bad) == "invalid"
    assert world.one(good) == "duplicate"


def test_invalid_then_valid_in_separate_batches(world: World) -> None:
    assert world.one(ev("message.received", event_id="e1", channel=None)) == "invalid"
    assert world.one(ev("message.received", event_id="e1")) == "accepted"
    assert len(world.rows()) == 1


def test_invalid_inputs_are_dead_lettered_with_raw_text_and_reason(world: World) -> None:
    bad = line(ev("conversation.assign", event_id="e-bad", data={}))
    assert world.send("garbage", bad) == ["invalid", "invalid"]
    letters = world.events.dead_letters
    assert [d.raw for d in letters] == ["garbage", bad]
    assert all(d.reason for d in letters)
    assert (letters[1].workspace_id, letters[1].event_id) == ("ws1", "e-bad")
    assert "assignee_id" in letters[1].reason


def test_rejections_are_recorded_with_their_reason(world: World) -> None:
    world.one(ev("conversation.close", event_id="e-r"))
    outcome = world.events.outcomes[("ws1", "e-r")]
    assert (outcome.outcome, outcome.reason) == ("rejected", "no_open_conversation")
    world.one(ev("message.received", event_id="e-a"))
    assert world.events.outcomes[("ws1", "e-a")].outcome == "accepted"


def test_invalid_and_rejected_never_stop_a_batch(world: World) -> None:
    outcomes = world.send("{", ev("conversation.close", t=0), ev("message.received", t=1),
                          ev("welcome", t=2, channel="sms"), ev("conversation.close", t=3))
    assert outcomes == ["invalid", "rejected:no_open_conversation", "accepted",
                        "rejected:welcome_not_supported", "accepted"]
    result = world.last
    assert result is not None
    assert (result.accepted, result.invalid, result.duplicate) == (2, 1, 0)
    assert dict(result.rejected) == {"no_open_conversation": 1, "welcome_not_supported": 1}


def test_rejection_reasons_are_the_contracts() -> None:
    assert set(REJECTION_REASONS) == {"welcome_not_supported", "already_open",
                                      "no_open_conversation", "already_merged", "invalid_merge"}


# ------------------------------------------------------------------ workspaces
def test_workspaces_are_isolated(world: World) -> None:
    assert world.send(ev("message.received", "c1", ws="w1", event_id="e1"),
                      ev("message.received", "c1", ws="w2", event_id="e1", t=1)) == [
        "accepted", "accepted"]
    assert world.one(ev("conversation.close", "c1", ws="w1", t=2, event_id="e2")) == "accepted"
    assert world.row(ws="w1")["status"] == "closed"
    assert world.row(ws="w2")["status"] == "open"
    assert world.row(ws="w1")["conversation_id"] != world.row(ws="w2")["conversation_id"]
    assert world.one(ev("conversation.close", "c1", ws="w2", t=3, event_id="e2")) == "accepted"


def test_merge_does_not_cross_workspaces(world: World) -> None:
    world.send(ev("message.received", "B", ws="w1"), ev("message.received", "B", ws="w2"),
               merge("A", "B", ws="w1", t=1))
    assert world.row(ws="w2")["status"] == "open"
    assert world.row(ws="w1", contact="B")["closed_by"] == "merge"
    assert world.one(merge("A", "B", ws="w2", t=2)) == "accepted"


# ------------------------------------------------------- processor mechanics
def test_a_failed_commit_keeps_nothing_and_can_be_retried(world: World) -> None:
    items = [parse(line(ev("message.received", event_id="e1"))),
             parse(line(ev("conversation.close", t=1, event_id="e2")))]
    world.events.fail_next_commit = OSError("disk full")
    with pytest.raises(OSError):
        world.uow.process(items)
    assert world.events.max_notification_id() == 0
    assert not world.uow.processor.contact("ws1", "c1").is_open
    result = world.uow.process(items)
    assert result.accepted == 2
    world.projection.catch_up(world.events)
    assert world.row()["status"] == "closed"


def test_a_second_processor_on_the_same_store_sees_committed_state(world: World) -> None:
    world.send(ev("message.received", event_id="e1"))
    other = BatchUnitOfWork(world.events)
    result = other.process([parse(line(ev("message.received", t=1, event_id="e1"))),
                            parse(line(ev("conversation.open", t=2, event_id="e2")))])
    assert (result.duplicate, dict(result.rejected)) == (1, {"already_open": 1})


def test_a_stale_cache_retries_on_concurrency_conflict(world: World) -> None:
    world.send(ev("message.received", t=0))  # caches c1 (open) in world.processor
    other = BatchUnitOfWork(world.events)
    other.process([parse(line(ev("conversation.close", t=1)))])
    result = world.uow.process([parse(line(ev("message.received", t=2)))])
    assert result.accepted == 1
    world.projection.catch_up(world.events)
    assert [r["status"] for r in world.rows()] == ["closed", "open"]


def test_events_are_numbered_from_one_and_carry_stable_ids(world: World) -> None:
    world.send(ev("message.received", t=0), ev("conversation.close", t=1))
    stored = world.events.read(0, 10)
    assert [n for n, _ in stored] == [1, 2, 3]
    assert len({e.event_id for _, e in stored}) == 3
    assert [e.aggregate_version for _, e in stored] == [1, 2, 3]
