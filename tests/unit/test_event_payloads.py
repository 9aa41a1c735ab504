"""Every field of every domain event, and the parser's edge rules, asserted exactly.

Written against the survivors of mutation testing (docs/mutation.md): fields
analytics consumers read (``MessageSent.actor_type`` decides first-response
time, ids and channels feed every grouping), the dead letter's raw text, the NUL
check, non-string ids, the merge-cycle guard, the metrics' date clamps and the
``calendar_date`` / ``time_zone`` input checks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from schemas.events import (
    ContactAbsorbed,
    ContactMerged,
    ConversationAssigned,
    ConversationClosed,
    ConversationOpened,
    DomainEvent,
    MessageReceived,
    MessageSent,
)
from services.conversation.application.handlers import survivor
from services.conversation.domain.contact import Contact, aggregate_id
from services.ingest.domain.normalise import Invalid, parse
from services.projections.domain.metrics import _LocalDates, calendar_date, time_zone

from .harness import World, ev, merge

#: the payload fields of each event type, without the common ones
COMMON = {"event_id", "event_type", "workspace_id", "contact_id", "aggregate_version",
          "occurred_at", "source_event_id", "schema_version"}


def payload(event: DomainEvent) -> dict[str, Any]:
    return {k: v for k, v in event.model_dump().items() if k not in COMMON}


def events_of(world: World, contact: str) -> list[DomainEvent]:
    return list(world.events.load(aggregate_id("ws1", contact)))


def test_every_payload_field_of_a_conversation() -> None:
    world = World()
    outcomes = world.send(
        ev("message.received", "c1", 0, channel={"type": "whatsapp", "id": "line-7"},
           actor=("contact", "cust-1"), data={"message_id": "m-1", "text": "hi"},
           event_id="g1"),
        ev("message.sent", "c1", 1, actor=("automation", "bot-9")),
        ev("message.sent", "c1", 2, actor=("user", "agent-2")),
        ev("message.sent", "c1", 3, actor=("dialogflow", "df-0")),
        ev("conversation.assign", "c1", 4, actor=("automation", "router"),
           data={"assignee_id": "alice", "team_id": "support"}),
        ev("conversation.assign", "c1", 5, actor=("user", "lead-1"),
           data={"assignee_id": None}),
        ev("conversation.close", "c1", 6, actor=("dialogflow", "df-1"),
           data={"category": "billing", "summary": "done"}),
    )
    assert outcomes == ["accepted"] * 7
    found = events_of(world, "c1")
    opened, received, bot, human, df, assigned, unassigned, closed = found
    assert isinstance(opened, ConversationOpened)
    cid = opened.conversation_id
    assert payload(opened) == {"conversation_id": cid, "opened_by": "contact",
                               "channel_type": "whatsapp", "channel_id": "line-7",
                               "actor_id": "cust-1", "recontact": False}
    assert opened.source_event_id == "g1" and received.source_event_id == "g1"
    assert isinstance(received, MessageReceived)
    assert payload(received) == {"conversation_id": cid, "message_id": "m-1"}
    assert isinstance(bot, MessageSent)
    assert payload(bot) == {"conversation_id": cid, "actor_type": "automation",
                            "actor_id": "bot-9", "first_response": False}
    assert payload(human) == {"conversation_id": cid, "actor_type": "user",
                              "actor_id": "agent-2", "first_response": True}
    assert payload(df) == {"conversation_id": cid, "actor_type": "dialogflow",
                           "actor_id": "df-0", "first_response": False}
    assert isinstance(assigned, ConversationAssigned)
    assert payload(assigned) == {"conversation_id": cid, "assignee_id": "alice",
                                 "team_given": True, "team_id": "support",
                                 "actor_type": "automation", "actor_id": "router"}
    assert payload(unassigned) == {"conversation_id": cid, "assignee_id": None,
                                   "team_given": False, "team_id": None,
                                   "actor_type": "user", "actor_id": "lead-1"}
    assert isinstance(closed, ConversationClosed)
    assert payload(closed) == {"conversation_id": cid, "closed_by": "dialogflow",
                               "closed_by_actor": "df-1", "category": "billing",
                               "summary": "done"}
    assert [e.aggregate_version for e in found] == list(range(1, 9))
    assert len({e.event_id for e in found}) == 8


def test_opening_commands_carry_channel_and_actor() -> None:
    world = World()
    world.send(ev("conversation.open", "c1", 0, actor=("automation", "auto-1"),
                  channel={"type": "telegram", "id": "t-1"}),
               ev("conversation.close", "c1", 1),
               ev("conversation.open", "c1", 2, actor=("user", "agent-4"), channel=None),
               ev("welcome", "c2", 3, channel={"type": "facebook", "id": "fb-1"}),
               ev("dialogflow.response", "c3", 4, data={"parameters": {"RB_MARKDONE": False}},
                  actor=("dialogflow", "df-2")),
               ev("dialogflow.response", "c3", 5, data={"parameters": {"RB_MARKDONE": "TRUE"}}))
    first, _, second = events_of(world, "c1")
    assert payload(first) | {"conversation_id": None} == {
        "conversation_id": None, "opened_by": "automation", "channel_type": "telegram",
        "channel_id": "t-1", "actor_id": "auto-1", "recontact": False}
    # no channel given: the last one, without its id; a re-contact within 24 h
    assert payload(second) | {"conversation_id": None} == {
        "conversation_id": None, "opened_by": "user", "channel_type": "telegram",
        "channel_id": None, "actor_id": "agent-4", "recontact": True}
    (welcomed,) = events_of(world, "c2")
    assert (welcomed.opened_by, welcomed.channel_type, welcomed.channel_id) == (  # type: ignore[attr-defined]
        "welcome", "facebook", "fb-1")
    bot_open, bot_close = events_of(world, "c3")
    assert (bot_open.opened_by, bot_open.actor_id) == ("dialogflow", "df-2")  # type: ignore[attr-defined]
    assert (bot_close.closed_by, bot_close.closed_by_actor) == ("dialogflow", None)  # type: ignore[attr-defined]


def test_merge_events_name_both_contacts() -> None:
    world = World()
    world.send(ev("message.received", "c1", 0), ev("conversation.close", "c1", 1),
               ev("message.received", "c2", 2), merge("c1", "c2", 3))
    *_, absorbed = events_of(world, "c1")
    assert isinstance(absorbed, ContactAbsorbed)
    assert absorbed.secondary_contact_id == "c2"
    closing, merged = events_of(world, "c2")[-2:]
    assert isinstance(closing, ConversationClosed) and closing.closed_by == "merge"
    assert closing.closed_by_actor is None
    assert isinstance(merged, ContactMerged)
    assert (merged.primary_contact_id, merged.secondary_contact_id) == ("c1", "c2")


# -- the parser ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["[1, 2]", "42", '"text"', "null", "true"])
def test_non_object_json_keeps_its_raw_text(raw: str) -> None:
    for given in (raw, raw.encode()):
        result = parse(given)
        assert isinstance(result, Invalid)
        assert result.raw == raw
        assert result.reason.startswith("envelope must be a JSON object, got ")
        assert (result.workspace_id, result.event_id) == (None, None)


def test_malformed_bytes_keep_their_text_with_replacement() -> None:
    result = parse(b'{"event_id": "\xff')
    assert isinstance(result, Invalid) and result.raw == '{"event_id": "\ufffd'
    assert result.reason.startswith("malformed JSON: ")


@pytest.mark.parametrize("field", ["event_id", "contact_id"])
def test_nul_in_a_stored_field_is_invalid_as_text_and_bytes(field: str) -> None:
    envelope = ev("message.received", "c1", 0)
    envelope[field] = "a\x00b"
    text = orjson.dumps(envelope).decode()
    assert "\\u0000" in text
    for given in (text, text.encode()):
        result = parse(given)
        assert isinstance(result, Invalid), field
        assert "NUL" in result.reason


def test_nul_outside_stored_fields_is_fine_and_escaped_text_without_nul_is_fast_pathed() -> None:
    envelope = ev("message.received", "c1", 0, data={"text": "a\x00b"})
    for given in (orjson.dumps(envelope), orjson.dumps(envelope).decode()):
        assert not isinstance(parse(given), Invalid)
    channel_nul = ev("message.received", "c1", 0, channel={"type": "sms", "id": "x\x00"})
    actor_nul = ev("message.sent", "c1", 0, actor={"type": "user", "id": "\x00"})
    data_nul = ev("conversation.close", "c1", 0, data={"summary": "\x00"})
    for envelope in (channel_nul, actor_nul, data_nul):
        result = parse(orjson.dumps(envelope))
        assert isinstance(result, Invalid) and "NUL" in result.reason


def test_invalid_outcome_names_string_ids_only() -> None:
    kept = parse(orjson.dumps({"workspace_id": "ws9", "event_id": "e9", "type": "nope"}))
    assert isinstance(kept, Invalid)
    assert (kept.workspace_id, kept.event_id) == ("ws9", "e9")
    dropped = parse(orjson.dumps({"workspace_id": 5, "event_id": ["e"], "type": "nope"}))
    assert isinstance(dropped, Invalid)
    assert (dropped.workspace_id, dropped.event_id) == (None, None)
    half = parse(orjson.dumps({"workspace_id": None, "event_id": "e1"}))
    assert isinstance(half, Invalid) and (half.workspace_id, half.event_id) == (None, "e1")


# -- the merge-cycle guard ------------------------------------------------------------------


class CycleContacts:
    """Corrupt data: c1 -> c2 -> c1."""

    def __init__(self) -> None:
        self.asked = 0
        self.contacts = {name: Contact("ws1", name) for name in ("c1", "c2", "c3")}
        self.contacts["c1"].merged_into = "c2"
        self.contacts["c2"].merged_into = "c1"
        self.contacts["c3"].merged_into = "c1"

    def get(self, workspace_id: str, contact_id: str) -> Contact:
        self.asked += 1
        return self.contacts[contact_id]

    def inactivity_timeout(self, workspace_id: str) -> int | None:
        return None


def test_a_merge_cycle_is_an_error_not_an_endless_loop() -> None:
    contacts = CycleContacts()
    with pytest.raises(RuntimeError, match="merge chain too long at c"):
        survivor(contacts, "ws1", "c3")
    assert 10_000 < contacts.asked < 10_010


def test_a_long_merge_chain_is_followed_to_its_end() -> None:
    class Chain(CycleContacts):
        def __init__(self) -> None:
            self.asked = 0
            self.contacts = {f"c{i}": Contact("ws1", f"c{i}") for i in range(10_001)}
            for i in range(10_000):
                self.contacts[f"c{i}"].merged_into = f"c{i + 1}"

    assert survivor(Chain(), "ws1", "c0").contact_id == "c10000"


# -- metrics input checks and date clamps ---------------------------------------------------


def test_calendar_date_checks() -> None:
    assert calendar_date("2026-02-28") == date(2026, 2, 28)
    assert calendar_date("0001-01-01") == date(1, 1, 1)
    for text in ("2026-2-03", "2026-02-03T00:00", " 2026-02-03", "20260203", "", "2026-02-3x"):
        with pytest.raises(ValueError) as info:
            calendar_date(text)
        assert str(info.value) == f"{text!r} is not a date (expected YYYY-MM-DD)"
    for text in ("2026-02-30", "2026-13-01", "0000-01-01"):
        with pytest.raises(ValueError) as info:
            calendar_date(text)
        assert str(info.value) == f"{text!r} is not a valid calendar date"


def test_time_zone_checks() -> None:
    assert time_zone("Europe/Berlin") == "Europe/Berlin"
    assert time_zone("UTC") == "UTC"
    for text in ("Mars/Olympus", "", "../etc/passwd", "Europe/Berlin\x00", "/UTC"):
        with pytest.raises(ValueError) as info:
            time_zone(text)
        assert str(info.value) == (f"unknown time zone {text!r} (use an IANA name such as "
                                   "Europe/Berlin)")


def micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def test_local_dates_clamp_at_the_ends_of_the_calendar() -> None:
    early = micros(datetime(1, 1, 1, 2, 0, tzinfo=UTC))  # 0000-12-31 in New York
    late = micros(datetime(9999, 12, 31, 22, 0, tzinfo=UTC))  # 10000-01-01 in Tokyo
    new_york, tokyo = _LocalDates(ZoneInfo("America/New_York")), _LocalDates(ZoneInfo("Asia/Tokyo"))
    assert new_york.exact(early) == date.min and new_york(early) == date.min
    assert tokyo.exact(late) == date.max and tokyo(late) == date.max
    assert tokyo.exact(early) == date(1, 1, 1) and new_york.exact(late) == date(9999, 12, 31)
    # memoised hours give the exact answer, across midnight too
    berlin = _LocalDates(ZoneInfo("Europe/Berlin"))
    evening = micros(datetime(2026, 11, 24, 22, 30, tzinfo=UTC))  # 23:30 local
    assert berlin(evening) == date(2026, 11, 24) == berlin(evening)
    after = micros(datetime(2026, 11, 24, 23, 30, tzinfo=UTC))  # 00:30 local, next day
    assert berlin(after) == date(2026, 11, 25)


def reason_of(envelope: dict[str, Any]) -> str:
    result = parse(orjson.dumps(envelope))
    assert isinstance(result, Invalid)
    return result.reason


def test_reasons_read_as_one_line_per_problem() -> None:
    """The first three problems, ``loc: message``, pydantic's prefixes removed."""
    assert reason_of({}) == ("event_id: field required; type: field required; "
                             "workspace_id: field required")
    base = {"event_id": "e", "type": "message.received", "workspace_id": "w",
            "contact_id": "c", "occurred_at": "2026-01-01T00:00:00Z"}
    assert reason_of({**base, "occurred_at": "2026-01-01T00:00:00"}) == (
        "occurred_at: timestamp '2026-01-01T00:00:00' has no UTC offset (add Z or +HH:MM)")
    assert reason_of({**base, "channel": {"type": "pigeon"}}).startswith(
        "channel.type: 'pigeon' is not one of the allowed values ('facebook', ")
    assert reason_of(base) == "channel is required for message.received"  # no location
    assert reason_of({**base, "type": "bogus"}).startswith(
        "type: 'bogus' is not one of the allowed values ('message.received', ")


def test_non_object_reason_names_the_json_type() -> None:
    for raw, kind in [("[1]", "list"), ("42", "int"), ('"x"', "str"), ("null", "NoneType"),
                      ("1.5", "float"), ("true", "bool")]:
        result = parse(raw)
        assert isinstance(result, Invalid)
        assert result.reason == f"envelope must be a JSON object, got {kind}"


def test_a_bot_reopening_keeps_the_channel_id() -> None:
    world = World()
    world.send(ev("dialogflow.response", "c1", 0, channel={"type": "sms", "id": "s-1"},
                  data={"parameters": {"RB_MARKDONE": "false"}}))
    (opened,) = events_of(world, "c1")
    assert isinstance(opened, ConversationOpened)
    assert (opened.opened_by, opened.channel_type, opened.channel_id) == (
        "dialogflow", "sms", "s-1")


def test_an_envelope_over_the_input_limit_is_invalid_with_its_ids() -> None:
    from services.ingest.domain.normalise import MAX_INPUT_BYTES

    envelope = ev("message.received", "c1", 0, event_id="big-1",
                  data={"text": "x" * MAX_INPUT_BYTES})
    raw = orjson.dumps(envelope)
    for given in (raw, raw.decode()):
        result = parse(given)
        assert isinstance(result, Invalid)
        assert result.reason == (f"envelope of {len(raw):,} bytes exceeds the limit of "
                                 f"{MAX_INPUT_BYTES:,} bytes (1 MiB)")
        assert (result.workspace_id, result.event_id) == ("ws1", "big-1")
        assert result.raw == raw.decode()
    not_json = b"[" + b"1," * MAX_INPUT_BYTES
    result = parse(not_json)
    assert isinstance(result, Invalid) and (result.workspace_id, result.event_id) == (None, None)
    assert result.reason.startswith(f"envelope of {len(not_json):,} bytes exceeds")
    small = orjson.dumps(ev("message.received", "c1", 0, data={"text": "x" * 1000}))
    assert not isinstance(parse(small), Invalid)


def test_an_envelope_over_the_input_limit_drops_non_string_ids() -> None:
    from services.ingest.domain.normalise import MAX_INPUT_BYTES

    big = orjson.dumps({"workspace_id": 5, "event_id": ["e"], "data": "x" * MAX_INPUT_BYTES})
    result = parse(big)
    assert isinstance(result, Invalid) and result.reason.startswith("envelope of ")
    assert (result.workspace_id, result.event_id) == (None, None)
