"""Acceptance of the lifecycle rules of CONTRACT §2, read back as the conversation
rows of §4/§5 (stories and their expected outcomes: ``contract_scenarios.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Contract

pytestmark = pytest.mark.e2e

T = "2026-11-24T"


def pick(rows: list[dict[str, Any]], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(row[f] for f in fields) for row in rows]


def test_message_received_opens_with_contact_and_its_channel_then_counts(
        contract: Contract) -> None:
    rows = contract.conversations("l-recv")
    assert pick(rows, "contact_id", "channel", "status", "opened_by", "opened_at",
                "messages_received", "messages_sent") == [
        ("c1", "whatsapp", "open", "contact", T + "10:00:00Z", 2, 1),
        ("c3", "line", "open", "contact", T + "10:04:00Z", 1, 0)]


def test_message_sent_never_opens(contract: Contract) -> None:
    assert "c2" not in [r["contact_id"] for r in contract.conversations("l-recv")]


def test_welcome_only_on_facebook_and_viber_and_never_when_open(contract: Contract) -> None:
    rows = contract.conversations("l-welcome")
    assert pick(rows, "contact_id", "channel", "opened_by", "status", "messages_received") == [
        ("c1", "facebook", "welcome", "open", 0), ("c2", "viber", "welcome", "open", 0)]


def test_conversation_open_channel_falls_back_to_the_last_conversation(
        contract: Contract) -> None:
    rows = contract.conversations("l-open")
    assert pick(rows, "contact_id", "opened_at", "channel", "opened_by", "closed_by",
                "resolution_seconds") == [
        ("c1", T + "10:00:00Z", None, "user", "user", 120),
        ("c2", T + "10:00:00Z", "line", "contact", "user", 300),
        ("c1", T + "10:03:00Z", None, "automation", None, None),
        ("c2", T + "11:00:00Z", "line", "automation", "user", 600),
        ("c2", T + "12:00:00Z", "email", "user", "user", 60),
        ("c2", T + "13:00:00Z", "email", "user", None, None)]


def test_close_records_actor_category_summary_and_is_never_reopened(
        contract: Contract) -> None:
    rows = contract.conversations("l-close")
    assert pick(rows, "contact_id", "status", "opened_at", "closed_at", "closed_by",
                "closed_by_actor", "category", "summary", "resolution_seconds") == [
        ("c2", "closed", T + "10:00:00Z", T + "09:59:00Z", "dialogflow", None, None, None, 0),
        ("c1", "closed", T + "10:00:10Z", T + "10:05:10Z", "automation", "bot-7", "billing",
         "refund sent", 300),
        ("c1", "open", T + "10:07:00Z", None, None, None, None, None, None)]


def test_assign_sets_team_only_when_the_key_is_present_and_close_keeps_it(
        contract: Contract) -> None:
    rows = contract.conversations("l-assign")
    assert pick(rows, "contact_id", "status", "assignee_id", "team_id") == [
        ("c1", "closed", "bob", "t1"), ("c2", "closed", None, None),
        ("c3", "closed", "erin", None), ("c4", "open", "frank", "t3")]


def test_dialogflow_rb_markdone_true_closes_and_false_opens(contract: Contract) -> None:
    rows = contract.conversations("l-df")
    assert pick(rows, "contact_id", "opened_at", "channel", "opened_by", "closed_by",
                "closed_by_actor", "resolution_seconds") == [
        ("c1", T + "10:00:00Z", "facebook", "contact", "dialogflow", None, 60),
        ("c2", T + "10:00:00Z", "facebook", "contact", "dialogflow", None, 120),
        ("c3", T + "10:00:00Z", "facebook", "contact", "dialogflow", "agent-x", 180),
        ("c4", T + "10:00:00Z", None, "dialogflow", None, None, None),
        ("c7", T + "10:00:00Z", "viber", "contact", "dialogflow", None, 600),
        ("c8", T + "10:00:00Z", "telegram", "dialogflow", None, None, None),
        ("c7", T + "10:20:00Z", "viber", "dialogflow", None, None, None)]


def test_dialogflow_without_rb_markdone_has_no_lifecycle_effect(contract: Contract) -> None:
    contacts = [r["contact_id"] for r in contract.conversations("l-df")]
    assert "c5" not in contacts and "c6" not in contacts


def test_merge_closes_the_secondary_and_redirects_it_transitively(contract: Contract) -> None:
    rows = contract.conversations("l-merge")
    assert pick(rows, "contact_id", "opened_at", "channel", "status", "closed_at", "closed_by",
                "closed_by_actor", "resolution_seconds", "messages_received") == [
        ("A", T + "10:00:00Z", "sms", "closed", T + "10:11:00Z", "merge", None, 660, 2),
        ("B", T + "10:01:00Z", "email", "closed", T + "10:05:00Z", "merge", None, 240, 1),
        ("C", T + "10:10:00Z", "whatsapp", "closed", T + "10:15:00Z", "user", "u1", 300, 2),
        ("C", T + "10:20:00Z", "telegram", "open", None, None, None, None, 1)]


def test_merge_into_a_merged_primary_goes_to_its_survivor(contract: Contract) -> None:
    rows = contract.conversations("l-merge2")
    assert pick(rows, "contact_id", "channel", "closed_at", "closed_by", "closed_by_actor",
                "resolution_seconds", "messages_received", "messages_sent") == [
        ("P", "sms", T + "10:06:00Z", "user", "u1", 360, 1, 1),
        ("Q", "email", T + "10:02:00Z", "merge", None, 60, 1, 0),
        ("R", "line", T + "10:04:00Z", "merge", None, 60, 1, 0)]


def test_contacts_and_merges_never_cross_workspaces(contract: Contract) -> None:
    assert pick(contract.conversations("l-xws-a"), "contact_id", "status",
                "messages_received") == [("c1", "open", 2)]
    assert pick(contract.conversations("l-xws-b"), "contact_id", "status", "closed_by") == [
        ("c1", "closed", "merge"), ("P", "open", None)]


def test_at_most_one_open_conversation_per_contact(contract: Contract) -> None:
    for story in contract.stories:
        if story.ws.startswith("l-"):
            opens = [r["contact_id"] for r in contract.conversations(story.ws)
                     if r["status"] == "open"]
            assert len(opens) == len(set(opens)), story.ws
