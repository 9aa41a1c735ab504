"""Acceptance of CONTRACT §1 (the envelope) and the outcome rules of §2, black-box.

Only the installed ``bonychat`` command and the HTTP API of ``bonychat serve``
(embedded runtime) are driven; expected values are worked out by hand in
``contract_scenarios.py``. Sibling files: ``test_contract_lifecycle.py`` (§2),
``test_contract_metrics.py`` (§3), ``test_contract_cli.py`` (§4),
``test_contract_http.py`` (§5).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Contract, gateway_token
from .contract_client import ok_json, run
from .contract_scenarios import at, expected_summary

pytestmark = pytest.mark.e2e

CHANNELS = ["facebook", "instagram", "whatsapp", "webchat", "line", "telegram", "viber", "sms",
            "twitter", "wechat", "email", "custom"]


def item(n: int, kind: str = "message.received", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": f"v-{n}", "type": kind, "workspace_id": "h-post",
                            "contact_id": f"v-{n}", "occurred_at": at("10:00")}
    if kind in ("message.received", "welcome"):
        body["channel"] = {"type": "facebook"}
    if kind in ("message.sent", "conversation.open", "conversation.close",
                "conversation.assign"):
        body["actor"] = {"type": "user", "id": "u1"}
    if kind == "conversation.assign":
        body["data"] = {"assignee_id": "a1"}
    if kind == "contact.merge":
        body["data"] = {"secondary_contact_id": "other"}
    for key, value in fields.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


DROP = object()

VALID = [
    item(1), item(2, channel={"type": "sms", "id": "+4930"}),
    item(3, actor={"type": "contact", "id": "c"}),
    *[item(10 + i, channel={"type": ch}) for i, ch in enumerate(CHANNELS)],
    *[item(30 + i, "message.sent", actor={"type": a}) for i, a in
      enumerate(("user", "automation", "dialogflow"))],
    item(40, "conversation.open"), item(41, "conversation.open", actor={"type": "automation"}),
    *[item(42 + i, "conversation.close", actor={"type": a}) for i, a in
      enumerate(("user", "automation", "dialogflow"))],
    item(50, "conversation.assign", data={"assignee_id": None}),
    item(51, "conversation.assign", data={"assignee_id": "a", "team_id": None},
         actor={"type": "dialogflow"}),
    item(52, "welcome", actor={"type": "system"}), item(53, "welcome", channel={"type": "viber"}),
    item(54, "dialogflow.response"), item(55, "dialogflow.response", actor={"type": "contact"},
                                          data={"parameters": {"RB_MARKDONE": "True"}}),
    item(56, "contact.merge"), item(57, "contact.merge", actor={"type": "user", "id": "u"}),
    item(60, future={"anything": [1, 2]}, data={"text": "hi", "emoji": "\U0001f600"}),
    item(61, occurred_at="2026-11-24T15:30:00+05:30"),
    item(62, occurred_at="2026-11-24T10:00:00.123456Z"),
    item(63, occurred_at="2026-11-24T10:00:00-08:00"),
    item(64, event_id="e" * 200), item(65, contact_id="c" * 200),
]
INVALID = [
    ("event_id empty", item(100, event_id="")), ("event_id 201", item(101, event_id="e" * 201)),
    ("event_id number", item(102, event_id=102)), ("event_id missing", item(103, event_id=DROP)),
    ("type unknown", item(104, type="message.deleted")), ("type missing", item(105, type=DROP)),
    ("contact empty", item(106, contact_id="")), ("contact 201", item(107, contact_id="c" * 201)),
    ("contact missing", item(108, contact_id=DROP)), ("contact number", item(109, contact_id=7)),
    ("no offset", item(110, occurred_at="2026-11-24T10:00:00")),
    ("date only", item(111, occurred_at="2026-11-24")),
    ("not a time", item(112, occurred_at="yesterday")),
    ("occurred_at missing", item(113, occurred_at=DROP)),
    ("received without channel", item(114, channel=DROP)),
    ("unknown channel", item(115, channel={"type": "fax"})),
    ("channel not an object", item(116, channel="sms")),
    ("welcome without channel", item(117, "welcome", channel=DROP)),
    ("sent without actor", item(118, "message.sent", actor=DROP)),
    ("unknown actor", item(119, "message.sent", actor={"type": "robot"})),
    ("sent by contact", item(120, "message.sent", actor={"type": "contact"})),
    ("open by dialogflow", item(121, "conversation.open", actor={"type": "dialogflow"})),
    ("open without actor", item(122, "conversation.open", actor=DROP)),
    ("close by contact", item(123, "conversation.close", actor={"type": "contact"})),
    ("close without actor", item(124, "conversation.close", actor=DROP)),
    ("assign without assignee_id", item(125, "conversation.assign", data={"team_id": "t"})),
    ("assign by system", item(126, "conversation.assign", actor={"type": "system"})),
    ("received from a user", item(127, actor={"type": "user", "id": "u"})),
    ("merge without secondary", item(128, "contact.merge", data={})),
    ("data not an object", item(129, data="text")),
    ("workspace missing", item(130, workspace_id=DROP)),
    ("actor not an object", item(131, "conversation.close", actor="user")),
]


def post_items(contract: Contract, items: list[Any]) -> list[dict[str, Any]]:
    reply = contract.server.request("POST", "/v1/events", gateway_token("h-post"), items)
    assert 200 <= reply.status < 300, (reply.status, reply.body)
    answer: list[dict[str, Any]] = reply.json()["items"]
    assert [a["index"] for a in answer] == list(range(len(items)))
    return answer


def test_envelope_accepts_every_valid_shape_of_the_table(contract: Contract) -> None:
    answer = post_items(contract, VALID)
    wrong = [(VALID[a["index"]], a) for a in answer if a["status"] != "accepted"]
    assert not wrong


def test_envelope_anything_else_that_breaks_the_table_is_invalid_with_a_reason(
        contract: Contract) -> None:
    answer = post_items(contract, [body for _, body in INVALID])
    wrong = [INVALID[a["index"]][0] for a in answer
             if a["status"] != "invalid" or not a.get("reason")]
    assert not wrong


def test_import_summary_counts_every_outcome_and_reason(contract: Contract) -> None:
    assert ok_json(contract.import_result) == expected_summary(contract.stories)
    assert list(json.loads(contract.import_result.stdout)) == [
        "read", "accepted", "duplicate", "rejected", "invalid"]


def test_occurred_at_with_an_offset_is_stored_as_utc(contract: Contract) -> None:
    rows = contract.conversations("l-env")
    assert [(r["contact_id"], r["opened_at"]) for r in rows] == [
        ("c1", "2026-11-24T10:00:00Z"), ("x" * 200, "2026-11-24T10:00:00Z")]


def test_workspace_id_pattern_and_200_char_limits(contract: Contract) -> None:
    """The summary counts the pattern story's 4 invalid names; the valid ones are read
    through the CLI in test_contract_cli.py (they have no analytics token)."""
    rows = contract.conversations("l-env")
    assert [(r["workspace_id"], len(r["contact_id"])) for r in rows] == [
        ("l-env", 2), ("l-env", 200)]


def test_duplicate_whatever_its_content(contract: Contract) -> None:
    rows = contract.conversations("l-dup")
    assert [(r["contact_id"], r["status"]) for r in rows] == [("c1", "open"), ("c3", "open")]


def test_rejected_event_counts_as_processed_for_dedupe(contract: Contract) -> None:
    assert all(r["contact_id"] != "c9" for r in contract.conversations("l-dup"))


def test_invalid_event_does_not_count_for_dedupe(contract: Contract) -> None:
    [row] = contract.conversations("l-dup", contact="c3")
    assert row["opened_at"] == "2026-11-24T10:04:00Z"


def test_same_event_id_in_another_workspace_is_not_a_duplicate(contract: Contract) -> None:
    assert [r["contact_id"] for r in contract.conversations("l-dup2")] == ["c1"]


def test_http_redelivery_is_a_duplicate_whatever_its_content(contract: Contract) -> None:
    first = item(900, contact_id="d1")
    second = item(900, "conversation.close", contact_id="d1", occurred_at=at("10:05"))
    assert [a["status"] for a in post_items(contract, [first])] == ["accepted"]
    assert [a["status"] for a in post_items(contract, [second])] == ["accepted"]
    [row] = contract.server.get_json("/v1/workspaces/h-post/conversations?contact=d1",
                                     "an-h-post")
    assert row["status"] == "open"


def test_invalid_lines_reach_the_dead_letter_store_as_they_were_with_a_reason(
        contract: Contract) -> None:
    letters = ok_json(run(["dead-letters", "--format", "json"], db=contract.db))
    reasons = {letter["raw"]: letter["reason"] for letter in letters if letter["source"] == "file"}
    expected = [line for story in contract.stories for line in story.dead_lines]
    assert len(expected) == 9
    assert [line for line in expected if not reasons.get(line)] == []
    assert len(reasons) == expected_summary(contract.stories)["invalid"]
