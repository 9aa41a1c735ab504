"""``schemas.construct.maker`` builds what ``construct_from`` builds (with
``every_field``: what the contact aggregate built with ``trusted``), and
``normalise.command_of`` (made of makers) the commands it built from dicts; and
``parse_rfc3339``'s shortcut for the plain UTC form agrees with its pattern.

The oracle is the dict-based ``command_of`` as it was before the makers
(:func:`reference_command_of`, kept here): on every valid envelope the fuzz
suite's strategy generates, both give the same class, the same values in the
same order (the bytes on the command topic), the same fields set.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.commands import (
    COMMAND_CLASSES,
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
from schemas.construct import construct_from, defaults_of, maker, trusted
from schemas.envelope import markdone_flag, parse_rfc3339, parse_rfc3339_by_pattern
from schemas.events import EVENT_CLASSES, DomainEvent
from services.ingest.domain.fast_envelope import Values, fast_values
from services.ingest.domain.normalise import command_of
from services.runtime.sinks import encode_command

from .test_envelope_fuzz import TOTAL, valid_envelopes


def reference_command_of(values: Values) -> CommandBase:
    """``command_of`` as it was: one dict per command, merged by ``construct_from``."""
    (event_id, kind, workspace_id, contact_id, occurred_at, channel_type, channel_id,
     actor_type, actor_id, data) = values
    if kind == "message.received":
        return construct_from(ReceiveMessage, {
            "workspace_id": workspace_id, "contact_id": contact_id, "event_id": event_id,
            "event_type": kind, "occurred_at": occurred_at, "actor_type": actor_type,
            "actor_id": actor_id, "channel_type": channel_type, "channel_id": channel_id,
            "message_id": data.get("message_id")})
    common: dict[str, Any] = {
        "workspace_id": workspace_id, "contact_id": contact_id, "event_id": event_id,
        "event_type": kind, "occurred_at": occurred_at, "actor_type": actor_type,
        "actor_id": actor_id,
    }
    if kind == "message.sent":
        return construct_from(SendMessage, common)
    if kind == "welcome":
        return construct_from(OpenWithWelcome, {**common, "channel_type": channel_type,
                                                "channel_id": channel_id})
    if kind == "conversation.open":
        return construct_from(OpenConversation, {**common, "opened_by": actor_type,
                                                 "channel_type": channel_type,
                                                 "channel_id": channel_id})
    if kind == "conversation.close":
        return construct_from(CloseConversation, {**common, "closed_by": actor_type,
                                                  "category": data.get("category"),
                                                  "summary": data.get("summary")})
    if kind == "conversation.assign":
        return construct_from(AssignConversation, {**common, "assignee_id": data["assignee_id"],
                                                   "team_given": "team_id" in data,
                                                   "team_id": data.get("team_id")})
    if kind == "dialogflow.response":
        flag = markdone_flag(data.get("parameters") or {})
        if flag is True:
            return construct_from(CloseConversation, {**common, "closed_by": "dialogflow"})
        if flag is False:
            return construct_from(OpenConversation, {**common, "opened_by": "dialogflow",
                                                     "channel_type": channel_type,
                                                     "channel_id": channel_id})
        return construct_from(AcknowledgeBotResponse, common)
    return construct_from(MergeContacts, {**common,
                                          "secondary_contact_id": data["secondary_contact_id"]})


def same_model(made: BaseModel, reference: BaseModel) -> None:
    assert type(made) is type(reference)
    assert list(made.__dict__.items()) == list(reference.__dict__.items())
    assert made.model_fields_set == reference.model_fields_set
    assert made == reference


@settings(max_examples=min(TOTAL, 1000), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(valid_envelopes())
def test_command_of_builds_what_the_dict_based_one_built(env: dict[str, Any]) -> None:
    values = fast_values(orjson.loads(orjson.dumps(env)))
    assert values is not None
    made, reference = command_of(values), reference_command_of(values)
    same_model(made, reference)
    assert made.model_dump_json() == reference.model_dump_json()
    assert encode_command(made) == encode_command(reference)


#: no deadline: each example compiles a maker (exec), slow on a loaded machine
UNTIMED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("cls", COMMAND_CLASSES, ids=lambda c: c.__name__)
@UNTIMED
@given(data=st.data())
def test_a_maker_builds_what_construct_from_builds(cls: type[CommandBase],
                                                   data: st.DataObject) -> None:
    """Any subset of the fields (the required ones included), in any order."""
    fields = list(cls.model_fields)
    required = [f for f in fields if cls.model_fields[f].is_required()]
    optional = data.draw(st.lists(st.sampled_from(fields), unique=True))
    names = tuple(data.draw(st.permutations(list(dict.fromkeys(required + optional)))))
    values = [data.draw(st.text(max_size=3) | st.none()) for _ in names]
    made = maker(cls, names)(*values)
    same_model(made, construct_from(cls, dict(zip(names, values, strict=True))))


@pytest.mark.parametrize("cls", EVENT_CLASSES.values(), ids=lambda c: c.__name__)
@UNTIMED
@given(data=st.data())
def test_a_maker_of_every_field_builds_what_the_aggregate_built(cls: type[DomainEvent],
                                                                data: st.DataObject) -> None:
    """``every_field``: what ``Contact._record`` built before the makers, the defaults
    overridden by the values given, every field counted as set (``trusted``)."""
    fields = list(cls.model_fields)
    required = [f for f in fields if cls.model_fields[f].is_required()]
    optional = data.draw(st.lists(st.sampled_from(fields), unique=True))
    names = tuple(data.draw(st.permutations(list(dict.fromkeys(required + optional)))))
    values = [data.draw(st.text(max_size=3) | st.none() | st.integers()) for _ in names]
    made = maker(cls, names, every_field=True)(*values)
    same_model(made, trusted(cls, {**defaults_of(cls),
                                   **dict(zip(names, values, strict=True))}))
    assert made.model_fields_set == set(fields)


def test_the_models_of_one_maker_are_separate() -> None:
    make = maker(SendMessage, ("workspace_id", "contact_id", "event_id", "event_type",
                               "occurred_at"))
    first, second = make("w", "c", "e1", "message.sent", None), make("w", "c", "e2", "x", None)
    assert (first.event_id, second.event_id) == ("e1", "e2")
    assert first.__dict__ is not second.__dict__
    with pytest.raises(Exception, match="frozen"):
        first.event_id = "e3"  # type: ignore[misc]


@pytest.mark.parametrize("names", [
    ("workspace_id", "contact_id"),  # required fields missing
    ("workspace_id", "contact_id", "event_id", "event_type", "occurred_at", "nope"),
    ("workspace_id", "workspace_id", "contact_id", "event_id", "event_type", "occurred_at"),
])
def test_a_maker_refuses_names_that_construct_from_would_not_build(names: tuple[str, ...]
                                                                    ) -> None:
    with pytest.raises(TypeError):
        maker(SendMessage, names)


# ------------------------------------------------- parse_rfc3339's plain UTC form (hot path)

def _verdict(parse: Any, value: object) -> tuple[str, Any]:
    try:
        moment = parse(value)
    except ValueError as exc:
        return "invalid", str(exc)
    return "valid", (moment, moment.tzinfo, moment.utcoffset())


TIMES = ["2026-11-24T10:00:00Z", "2026-11-24T10:00:00z", "2026-11-24t10:00:00Z",
         "2026-02-29T10:00:00Z", "2024-02-29T10:00:00Z", "2026-13-01T00:00:00Z",
         "2026-11-24T24:00:00Z", "2026-11-24T10:00:60Z", "0000-01-01T00:00:00Z",
         "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "\u0662026-11-24T10:00:00Z",
         "2026-11-24T10:00:00Z\n", "2026-11-24T10:00:00.5Z", "2026-11-24T10:00:00+00:00",
         "2026-11-24 10:00:00Z", "2026-11-24T10:00:00", "", 0, None]


@pytest.mark.parametrize("value", TIMES)
def test_the_plain_utc_form_gets_the_patterns_verdict(value: object) -> None:
    assert _verdict(parse_rfc3339, value) == _verdict(parse_rfc3339_by_pattern, value)


@UNTIMED
@given(st.text(alphabet="0123456789-:TZz.+ \u0660\u0662", min_size=18, max_size=22)
       | st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z"))
def test_any_time_like_text_gets_the_patterns_verdict(value: str) -> None:
    assert _verdict(parse_rfc3339, value) == _verdict(parse_rfc3339_by_pattern, value)
