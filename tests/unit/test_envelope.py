"""CONTRACT §1 (and the per-type data rules of §2): what is a valid envelope.

Everything goes through ``services.ingest.domain.normalise.parse``, i.e. raw JSON text
in, a command or an :class:`Invalid` out, as every runtime does it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.commands import (
    AcknowledgeBotResponse,
    AssignConversation,
    CloseConversation,
    CommandBase,
    MergeContacts,
    OpenConversation,
    OpenWithWelcome,
    ReceiveMessage,
    SendMessage,
)
from services.ingest.domain.normalise import MAX_INPUT_BYTES, Invalid, parse

from .harness import ev

CHANNELS = ("facebook", "instagram", "whatsapp", "webchat", "line", "telegram", "viber",
            "sms", "twitter", "wechat", "email", "custom")
ACTORS = ("contact", "user", "automation", "dialogflow", "system")
EVENT_TYPES = ("message.received", "message.sent", "welcome", "conversation.open",
               "conversation.close", "conversation.assign", "dialogflow.response",
               "contact.merge")
#: CONTRACT §2 "allowed actor types"; None = no actor. Types not listed allow any or none.
ALLOWED: dict[str, set[str | None]] = {
    "message.received": {None, "contact"},
    "message.sent": {"user", "automation", "dialogflow"},
    "welcome": {None, *ACTORS},
    "conversation.open": {"user", "automation"},
    "conversation.close": {"user", "automation", "dialogflow"},
    "conversation.assign": {"user", "automation", "dialogflow"},
    "dialogflow.response": {None, *ACTORS},
    "contact.merge": {None, *ACTORS},
}
COMMAND_OF = {
    "message.received": ReceiveMessage, "message.sent": SendMessage,
    "welcome": OpenWithWelcome, "conversation.open": OpenConversation,
    "conversation.close": CloseConversation, "conversation.assign": AssignConversation,
    "dialogflow.response": AcknowledgeBotResponse, "contact.merge": MergeContacts,
}


def valid(kind: str = "message.received", **kw: Any) -> dict[str, Any]:
    if kind == "contact.merge" and "data" not in kw:
        kw["data"] = {"secondary_contact_id": "c2"}
    return ev(kind, **kw)


def run(envelope: Any) -> CommandBase | Invalid:
    text = envelope if isinstance(envelope, str) else orjson.dumps(envelope).decode()
    return parse(text)


def accepted(envelope: Any) -> CommandBase:
    result = run(envelope)
    assert not isinstance(result, Invalid), result.reason
    return result


def rejected(envelope: Any) -> Invalid:
    result = run(envelope)
    assert isinstance(result, Invalid), f"expected invalid, got {result!r}"
    assert result.reason.strip(), "an invalid outcome needs a human-readable reason"
    return result


def without(envelope: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in envelope.items() if k != key}


def with_(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**envelope, **changes}


# ------------------------------------------------------------------ valid basics
@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_each_type_has_a_valid_minimal_form(kind: str) -> None:
    assert type(accepted(valid(kind))) is COMMAND_OF[kind]


def test_command_carries_the_envelope_fields() -> None:
    command = accepted(valid("message.sent", ws="team_A-1", contact="+49 170 1234",
                             event_id="wamid.X==", actor=("automation", "bot-7")))
    assert command.workspace_id == "team_A-1"
    assert command.contact_id == "+49 170 1234"
    assert command.event_id == "wamid.X=="
    assert command.event_type == "message.sent"
    assert (command.actor_type, command.actor_id) == ("automation", "bot-7")


# ------------------------------------------------------------- required fields
@pytest.mark.parametrize("field", ["event_id", "type", "workspace_id", "contact_id",
                                   "occurred_at"])
def test_missing_required_field_is_invalid(field: str) -> None:
    reason = rejected(without(valid(), field)).reason
    assert field in reason


@pytest.mark.parametrize("field", ["event_id", "type", "workspace_id", "contact_id",
                                   "occurred_at"])
@pytest.mark.parametrize("value", [None, 7, 7.5, True, ["x"], {"x": 1}])
def test_required_field_of_wrong_type_is_invalid(field: str, value: Any) -> None:
    rejected(with_(valid(), **{field: value}))


@pytest.mark.parametrize("field", ["event_id", "contact_id"])
def test_id_length_is_1_to_200_characters(field: str) -> None:
    rejected(with_(valid(), **{field: ""}))
    assert getattr(accepted(with_(valid(), **{field: "x"})), field) == "x"
    assert getattr(accepted(with_(valid(), **{field: "x" * 200})), field) == "x" * 200
    assert getattr(accepted(with_(valid(), **{field: "é" * 200})), field) == "é" * 200
    rejected(with_(valid(), **{field: "x" * 201}))


@pytest.mark.parametrize("workspace", ["ws1", "A", "a_b-C_9", "-", "_", "w" * 64])
def test_workspace_id_matching_the_pattern_is_valid(workspace: str) -> None:
    assert accepted(valid(ws=workspace)).workspace_id == workspace


@pytest.mark.parametrize("workspace", ["", "w" * 65, "ws 1", "ws.1", "ws/1", "wś", "ws1\n",
                                       "\nws1", "ws:1", "ws1 "])
def test_workspace_id_not_matching_the_pattern_is_invalid(workspace: str) -> None:
    assert "workspace_id" in rejected(valid(ws=workspace)).reason


@pytest.mark.parametrize("kind", ["message", "Message.Received", "message.read",
                                  "conversation.reopen", ""])
def test_unknown_type_is_invalid(kind: str) -> None:
    rejected(with_(valid(), type=kind))


# ------------------------------------------------------------------ timestamps
@pytest.mark.parametrize(("text", "utc"), [
    ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
    ("2026-11-24t10:00:00z", datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
    ("2026-11-24T10:00:00+00:00", datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
    ("2026-11-24T10:00:00-00:00", datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
    ("2026-11-24T10:00:00+05:30", datetime(2026, 11, 24, 4, 30, tzinfo=UTC)),
    ("2026-11-24T10:00:00+05:45", datetime(2026, 11, 24, 4, 15, tzinfo=UTC)),
    ("2026-11-24T01:00:00+02:00", datetime(2026, 11, 23, 23, 0, tzinfo=UTC)),
    ("2026-11-24T22:30:00-03:00", datetime(2026, 11, 25, 1, 30, tzinfo=UTC)),
    ("2026-11-24T10:00:00.5Z", datetime(2026, 11, 24, 10, 0, 0, 500_000, tzinfo=UTC)),
    ("2026-11-24T10:00:00.123456Z", datetime(2026, 11, 24, 10, 0, 0, 123_456, tzinfo=UTC)),
    ("2026-11-24T10:00:00.123+05:30", datetime(2026, 11, 24, 4, 30, 0, 123_000, tzinfo=UTC)),
    ("2026-11-24T10:00:00.123456789Z", datetime(2026, 11, 24, 10, 0, 0, 123_456, tzinfo=UTC)),
    ("2028-02-29T12:00:00Z", datetime(2028, 2, 29, 12, 0, tzinfo=UTC)),
    ("2026-12-31T23:59:59.999999Z", datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_timestamp_with_offset_is_stored_as_utc(text: str, utc: datetime) -> None:
    occurred = accepted(valid(occurred_at=text)).occurred_at
    assert occurred == utc
    assert occurred.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", [
    "2026-11-24T10:00:00",  # no offset
    "2026-11-24T10:00:00.250",  # no offset, fractional
    "2026-11-24",
    "2026-11-24T10:00Z",  # no seconds
    "2026-11-24T10:00:00+0530",
    "2026-11-24T10:00:00+05",
    "2026-11-24T10:00:00 Z",
    "2026-11-24T10:00:00.Z",
    "2026-02-30T10:00:00Z",
    "2026-02-29T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-00-10T10:00:00Z",
    "2026-11-31T10:00:00Z",
    "2026-11-24T24:00:00Z",
    "2026-11-24T10:60:00Z",
    "2026-11-24T10:00:00+24:00",
    "24/11/2026 10:00:00Z",
    "yesterday",
    "",
    "2026-11-24T10:00:00Z\n",
    " 2026-11-24T10:00:00Z",
    "\uff12\uff10\uff12\uff16-11-24T10:00:00Z",  # fullwidth digits
    "9999-12-31T23:59:59-01:00",  # UTC instant after year 9999
    "0001-01-01T00:00:00+01:00",  # UTC instant before year 1
])
def test_bad_timestamp_is_invalid(text: str) -> None:
    assert "occurred_at" in rejected(valid(occurred_at=text)).reason


@pytest.mark.parametrize("value", [1764000000, 1764000000.5, None, True, ["2026-11-24T10:00:00Z"]])
def test_non_string_timestamp_is_invalid(value: Any) -> None:
    rejected(valid(occurred_at=value))


def test_timestamp_without_offset_reason_says_so() -> None:
    assert "offset" in rejected(valid(occurred_at="2026-11-24T10:00:00")).reason


# --------------------------------------------------------------------- channel
@pytest.mark.parametrize("channel", CHANNELS)
def test_every_listed_channel_is_valid(channel: str) -> None:
    command = accepted(valid("message.received", channel={"type": channel, "id": "page-1"}))
    assert isinstance(command, ReceiveMessage)
    assert (command.channel_type, command.channel_id) == (channel, "page-1")


@pytest.mark.parametrize("kind", ["message.received", "welcome"])
def test_channel_is_required_for_received_and_welcome(kind: str) -> None:
    assert "channel" in rejected(without(valid(kind), "channel")).reason
    assert "channel" in rejected(with_(valid(kind), channel=None)).reason


@pytest.mark.parametrize("channel", [
    {"type": "fax"}, {"type": "WhatsApp"}, {"type": ""}, {"type": None}, {}, {"id": "x"},
    {"type": "whatsapp", "id": 5}, {"type": 3}, "whatsapp", ["whatsapp"], 1,
])
def test_malformed_or_unknown_channel_is_invalid(channel: Any) -> None:
    rejected(with_(valid("message.received"), channel=channel))


@pytest.mark.parametrize("kind", ["message.sent", "conversation.open", "conversation.close",
                                  "dialogflow.response"])
def test_unknown_channel_is_invalid_even_where_channel_is_optional(kind: str) -> None:
    rejected(with_(valid(kind), channel={"type": "fax"}))


def test_channel_id_is_optional_and_may_be_null() -> None:
    for channel in ({"type": "sms"}, {"type": "sms", "id": None}):
        command = accepted(valid("message.received", channel=channel))
        assert isinstance(command, ReceiveMessage)
        assert (command.channel_type, command.channel_id) == ("sms", None)


@pytest.mark.parametrize("kind", ["message.sent", "conversation.open", "conversation.close",
                                  "conversation.assign", "dialogflow.response", "contact.merge"])
def test_channel_is_optional_for_other_types(kind: str) -> None:
    accepted(without(valid(kind), "channel"))


# ----------------------------------------------------------------------- actor
@pytest.mark.parametrize("kind", EVENT_TYPES)
@pytest.mark.parametrize("actor", [None, *ACTORS])
def test_actor_rules_per_type(kind: str, actor: str | None) -> None:
    envelope = valid(kind, actor=(actor, "a-1") if actor else None)
    if actor in ALLOWED[kind]:
        command = accepted(envelope)
        assert command.actor_type == actor
        assert command.actor_id == ("a-1" if actor else None)
    else:
        assert "actor" in rejected(envelope).reason


@pytest.mark.parametrize("kind", EVENT_TYPES)
@pytest.mark.parametrize("actor", [{"type": "bot"}, {"type": "User"}, {"type": None}, {},
                                   {"id": "u1"}, {"type": "user", "id": 9}, "user", ["user"]])
def test_malformed_or_unknown_actor_is_invalid(kind: str, actor: Any) -> None:
    rejected(with_(valid(kind), actor=actor))


def test_actor_id_is_optional_and_may_be_null() -> None:
    for actor in ({"type": "user"}, {"type": "user", "id": None}):
        command = accepted(valid("conversation.close", actor=actor))
        assert (command.actor_type, command.actor_id) == ("user", None)


# ------------------------------------------------------------------------ data
@pytest.mark.parametrize("kind", ["message.received", "message.sent", "welcome",
                                  "conversation.open", "conversation.close",
                                  "dialogflow.response"])
def test_data_is_optional_and_may_be_null_for_types_without_required_data(kind: str) -> None:
    accepted(without(valid(kind), "data"))
    accepted(with_(valid(kind), data=None))
    accepted(with_(valid(kind), data={}))


@pytest.mark.parametrize("kind", EVENT_TYPES)
@pytest.mark.parametrize("data", [[], ["x"], "text", 3, True])
def test_data_that_is_not_an_object_is_invalid(kind: str, data: Any) -> None:
    assert "data" in rejected(with_(valid(kind), data=data)).reason


def test_message_fields_are_carried() -> None:
    command = accepted(valid("message.received", data={"message_id": "m-1", "text": "hi"}))
    assert isinstance(command, ReceiveMessage)
    assert command.message_id == "m-1"


def test_close_category_and_summary_are_carried() -> None:
    command = accepted(valid("conversation.close", actor=("user", "u9"),
                             data={"category": "billing", "summary": "refunded"}))
    assert isinstance(command, CloseConversation)
    assert (command.closed_by, command.category, command.summary) == (
        "user", "billing", "refunded")


@pytest.mark.parametrize("data", [{"category": 1}, {"summary": ["x"]}])
def test_close_category_and_summary_must_be_strings(data: dict[str, Any]) -> None:
    rejected(valid("conversation.close", data=data))


# ---------------------------------------------------------------------- assign
def test_assign_without_assignee_id_key_is_invalid() -> None:
    assert "assignee_id" in rejected(valid("conversation.assign", data={})).reason
    rejected(valid("conversation.assign", data={"team_id": "t1"}))
    rejected(with_(valid("conversation.assign"), data=None))
    rejected(without(valid("conversation.assign"), "data"))


def test_assign_with_null_assignee_unassigns() -> None:
    command = accepted(valid("conversation.assign", data={"assignee_id": None}))
    assert isinstance(command, AssignConversation)
    assert command.assignee_id is None
    assert command.team_given is False


@pytest.mark.parametrize(("data", "team_given", "team_id"), [
    ({"assignee_id": "a1"}, False, None),
    ({"assignee_id": "a1", "team_id": "t1"}, True, "t1"),
    ({"assignee_id": "a1", "team_id": None}, True, None),
])
def test_assign_team_is_given_only_when_the_key_is_present(
        data: dict[str, Any], team_given: bool, team_id: str | None) -> None:
    command = accepted(valid("conversation.assign", data=data))
    assert isinstance(command, AssignConversation)
    assert (command.assignee_id, command.team_given, command.team_id) == (
        "a1", team_given, team_id)


@pytest.mark.parametrize("data", [{"assignee_id": 5}, {"assignee_id": ["a"]},
                                  {"assignee_id": "a1", "team_id": 3}])
def test_assign_ids_must_be_strings_or_null(data: dict[str, Any]) -> None:
    rejected(valid("conversation.assign", data=data))


# ----------------------------------------------------------------------- merge
@pytest.mark.parametrize("data", [{}, {"secondary_contact_id": None},
                                  {"secondary_contact_id": ""},
                                  {"secondary_contact_id": 42},
                                  {"secondary_contact_id": "x" * 201},
                                  {"secondary": "c2"}])
def test_merge_without_a_valid_secondary_is_invalid(data: dict[str, Any]) -> None:
    assert "secondary_contact_id" in rejected(valid("contact.merge", data=data)).reason


def test_merge_without_data_is_invalid() -> None:
    rejected(without(valid("contact.merge"), "data"))
    rejected(with_(valid("contact.merge"), data=None))


def test_merge_names_primary_and_secondary() -> None:
    command = accepted(valid("contact.merge", contact="primary",
                             data={"secondary_contact_id": "x" * 200}))
    assert isinstance(command, MergeContacts)
    assert (command.contact_id, command.secondary_contact_id) == ("primary", "x" * 200)


# ------------------------------------------------------------------ dialogflow
@pytest.mark.parametrize("flag", [True, "true", "TRUE", "True", "tRuE"])
def test_markdone_true_is_a_close_by_dialogflow(flag: Any) -> None:
    command = accepted(valid("dialogflow.response", actor=("dialogflow", "agent-df"),
                             data={"parameters": {"RB_MARKDONE": flag}}))
    assert isinstance(command, CloseConversation)
    assert command.closed_by == "dialogflow"


@pytest.mark.parametrize("flag", [False, "false", "FALSE", "False"])
def test_markdone_false_is_an_open_by_dialogflow(flag: Any) -> None:
    command = accepted(valid("dialogflow.response", channel="facebook",
                             data={"parameters": {"RB_MARKDONE": flag}}))
    assert isinstance(command, OpenConversation)
    assert command.opened_by == "dialogflow"
    assert command.channel_type == "facebook"


@pytest.mark.parametrize("data", [None, {}, {"parameters": None}, {"parameters": {}},
                                  {"parameters": {"intent": "greet", "rb_markdone": True}},
                                  {"parameters": {"RB_MARKDONE": None}},
                                  {"parameters": {"RB_MARKDONE": ""}},
                                  {"text": "hello"}])
def test_without_markdone_the_response_is_acknowledged(data: Any) -> None:
    assert isinstance(accepted(valid("dialogflow.response", data=data)), AcknowledgeBotResponse)


@pytest.mark.parametrize("flag", ["yes", "1", " true", "done", 1, 0, ["true"], {"v": True}])
def test_markdone_that_is_neither_true_nor_false_is_invalid(flag: Any) -> None:
    reason = rejected(valid("dialogflow.response",
                            data={"parameters": {"RB_MARKDONE": flag}})).reason
    assert "RB_MARKDONE" in reason


@pytest.mark.parametrize("parameters", ["RB_MARKDONE=true", ["RB_MARKDONE"], 1, True])
def test_parameters_that_are_not_an_object_are_invalid(parameters: Any) -> None:
    rejected(valid("dialogflow.response", data={"parameters": parameters}))


# ------------------------------------------------------------ forward compat
def test_unknown_extra_fields_are_ignored_everywhere() -> None:
    envelope = valid("conversation.assign", data={"assignee_id": "a1", "priority": "high"},
                     actor={"type": "user", "id": "u1", "name": "Ann", "x": [1]})
    envelope.update({"schema": 2, "trace": {"span": "abc"}, "channel": {
        "type": "webchat", "id": None, "label": "site"}, "tags": None})
    command = accepted(envelope)
    assert isinstance(command, AssignConversation)
    assert (command.assignee_id, command.actor_id) == ("a1", "u1")


# ------------------------------------------------------------------- not JSON
@pytest.mark.parametrize("text", ["not json", "{", "", "{'event_id': 'x'}", '{"a":1}{"b":2}'])
def test_malformed_json_is_invalid_and_keeps_the_raw_text(text: str) -> None:
    result = rejected(text)
    assert result.raw == text


@pytest.mark.parametrize("value", [[], [{"event_id": "x"}], "text", 1, None, True, {}])
def test_json_that_is_not_an_envelope_object_is_invalid(value: Any) -> None:
    rejected(orjson.dumps(value).decode())


def test_undecodable_bytes_are_invalid_not_a_crash() -> None:
    result = parse(b'{"event_id": "\xff\xfe"}')
    assert isinstance(result, Invalid)


def test_invalid_keeps_raw_text_and_what_ids_it_could_read() -> None:
    envelope = valid(ws="ws9", event_id="e-77", occurred_at="2026-11-24T10:00:00")
    text = orjson.dumps(envelope).decode()
    result = parse(text)
    assert isinstance(result, Invalid)
    assert (result.raw, result.workspace_id, result.event_id) == (text, "ws9", "e-77")


# ------------------------------------------------------------------ size limit
def sized(size: int) -> bytes:
    """A valid message.received envelope of exactly ``size`` bytes (UTF-8)."""
    base = orjson.dumps(valid(data={"text": ""}, ws="ws9", event_id="big-1"))
    padding = size - len(base)
    assert padding >= 0
    return base.replace(b'"text":""', b'"text":"' + b"x" * padding + b'"')


def test_an_envelope_of_exactly_one_mebibyte_is_valid() -> None:
    assert MAX_INPUT_BYTES == 1_048_576
    line = sized(MAX_INPUT_BYTES)
    assert len(line) == MAX_INPUT_BYTES
    assert not isinstance(parse(line), Invalid)
    assert not isinstance(parse(line.decode()), Invalid)


@pytest.mark.parametrize("size", [MAX_INPUT_BYTES + 1, 3 * MAX_INPUT_BYTES])
def test_an_envelope_over_one_mebibyte_is_invalid_and_the_reason_names_its_size(
        size: int) -> None:
    line = sized(size)
    for raw in (line, line.decode()):
        result = parse(raw)
        assert isinstance(result, Invalid)
        assert f"{size:,} bytes" in result.reason and "1,048,576" in result.reason
        assert (result.workspace_id, result.event_id) == ("ws9", "big-1")
        assert result.raw == line.decode()


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    base = sized(MAX_INPUT_BYTES).decode()
    # "é" is two bytes in UTF-8: replacing "xx" keeps the size, replacing "x" adds one
    same = base.replace("xx", "é", 1)
    assert len(same) < MAX_INPUT_BYTES and len(same.encode()) == MAX_INPUT_BYTES
    assert not isinstance(parse(same), Invalid)
    wider = base.replace("x", "é", 1)
    assert len(wider) == MAX_INPUT_BYTES and len(wider.encode()) == MAX_INPUT_BYTES + 1
    result = parse(wider)
    assert isinstance(result, Invalid) and "1,048,577 bytes" in result.reason


def test_garbage_over_the_limit_is_invalid_for_its_size() -> None:
    result = parse(b"y" * (MAX_INPUT_BYTES + 10))
    assert isinstance(result, Invalid)
    assert "1,048,586 bytes" in result.reason
    assert (result.workspace_id, result.event_id) == (None, None)
