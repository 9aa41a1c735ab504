"""The fast envelope check (``services.ingest.domain.fast_envelope``) against the model.

``parse`` tries the fast check first and asks the pydantic model only when the
check is unsure; ``parse_by_model`` asks the model alone. The fuzz suite
(test_envelope_fuzz.check) compares the two on every input it generates; here:
edge values field by field (the fuzz suite meets them rarely), bad input of
every kind with its reason pinned as it was before the fast path existed, and
the derivation from the model (a changed model is refused, not silently
diverged from).
"""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, Field

from schemas.envelope import Actor, Channel, GatewayEnvelope
from services.http.errors import ApiError
from services.http.post_events import parse_body
from services.ingest.domain import fast_envelope
from services.ingest.domain.fast_envelope import fast_values
from services.ingest.domain.normalise import Invalid, parse

from .test_envelope_fuzz import TOTAL, agree, valid_envelopes

# ---------------------------------------------------------------- edge values, field by field

ID_EDGES = ["", "x", "x" * 200, "x" * 201, "\U0001f600" * 200, "\U0001f600" * 201, "a\nb",
            "\u2028", " ", 0, 1.5, None, True, [], {}, ["x"]]
EDGES: dict[tuple[str, ...], list[Any]] = {
    ("event_id",): ID_EDGES,
    ("contact_id",): ID_EDGES,
    ("workspace_id",): ["ws1", "ws1\n", "\nws1", "ws 1", "w" * 64, "w" * 65, "", "ws-_1",
                        "wś", "ws\u0660", 1, None, ["ws1"]],
    ("type",): ["message.sent", "MESSAGE.SENT", "message.sent ", "", None, 1, ["welcome"],
                {"a": 1}],
    ("occurred_at",): ["2026-11-24T10:00:00Z", "2026-11-24t10:00:00z", "2026-11-24 10:00:00Z",
                       "2026-11-24T10:00:00", "2026-11-24T10:00Z", "2026-11-24T10:00:00.Z",
                       "2026-11-24T10:00:00.1234567891+01:00", "2026-11-24T10:00:00Z\n",
                       "2026-11-24T10:00:60Z", "2026-02-29T10:00:00Z", "2024-02-29T10:00:00Z",
                       "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                       "2026-W48-2T10:00:00Z", "20261124T100000Z", "2026-11-24T10:00:00+24:00",
                       "2026-11-24T10:00:00-00:00", "\u0662026-11-24T10:00:00Z", 0, None, []],
    ("channel",): [None, {}, [], "sms", {"type": "sms"}, {"type": "SMS"}, {"id": "x"},
                   {"type": "sms", "id": None}, {"type": "sms", "id": 5}, {"type": None}],
    ("channel", "id"): [None, "", "x", 0, [], {}],
    ("actor",): [None, {}, [], "user", {"type": "user"}, {"type": "bot"}, {"type": None},
                 {"type": "contact", "id": None}, {"type": "user", "id": False}],
    ("actor", "id"): [None, "", "x", 0, [], {}],
    ("data",): [None, {}, [], "x", 0, {"text": 5}, {"message_id": None}, {"assignee_id": None},
                {"assignee_id": "a", "team_id": None}, {"assignee_id": 1},
                {"secondary_contact_id": ""}, {"secondary_contact_id": "x" * 201},
                {"parameters": None}, {"parameters": []}, {"parameters": {"RB_MARKDONE": "x"}},
                {"parameters": {"RB_MARKDONE": ""}}, {"parameters": {"RB_MARKDONE": "TRUE"}},
                {"category": 1}, {"summary": None}],
}
PATHS = sorted(EDGES)


def _with(env: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = deepcopy(env)
    target = copy
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {"type": "sms"}
        target = target[key]
    target[path[-1]] = value
    return copy


@st.composite
def edge_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    env = draw(valid_envelopes())
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(PATHS))
        env = _with(env, path, draw(st.sampled_from(EDGES[path])))
    return env


def test_edge_values_get_the_same_verdict_either_way() -> None:
    @settings(max_examples=max(300, TOTAL // 3), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(edge_envelopes(), st.booleans())
    def run(env: dict[str, Any], as_text: bool) -> None:
        raw = json.dumps(env, ensure_ascii=False).encode()
        agree(raw.decode() if as_text else raw, parse(raw.decode() if as_text else raw))

    run()


@pytest.mark.parametrize("path", PATHS)
def test_every_edge_value_of_a_field_gets_the_same_verdict(path: tuple[str, ...]) -> None:
    base = {"event_id": "e1", "type": "message.received", "workspace_id": "ws1",
            "contact_id": "c1", "occurred_at": "2026-11-24T10:00:00Z",
            "channel": {"type": "sms"}, "data": {"message_id": "m1"}}
    kinds = ["message.received", "message.sent", "conversation.assign", "dialogflow.response",
             "contact.merge"]
    verdicts = set()
    for value in EDGES[path]:
        for kind in kinds:
            env = _with({**base, "type": kind, "actor": {"type": "user"}}
                        if kind != "message.received" else base, path, value)
            raw = orjson.dumps(env)
            agree(raw, parse(raw))
            verdicts.add(isinstance(parse(raw), Invalid))
    assert verdicts == {True, False}  # the edges fall on both sides


def test_a_valid_envelope_takes_the_fast_path() -> None:
    env = {"event_id": "e1", "type": "message.sent", "workspace_id": "ws1", "contact_id": "c1",
           "occurred_at": "2026-11-24T10:00:00+01:00", "actor": {"type": "user", "id": "u"},
           "data": {"text": "hi"}}
    values = fast_values(env)
    assert values is not None and values[4].isoformat() == "2026-11-24T09:00:00+00:00"
    assert fast_values({**env, "workspace_id": "ws1\n"}) is None  # a full match, as pydantic's
    assert fast_values({**env, "actor": {"type": "contact"}}) is None  # the per-type rules


def test_known_workspaces_and_types_are_shared_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values are equal to the input's; the workspace id is the first accepted copy
    (its pattern matched once), the types the model's own literals. An id the pattern
    refuses is never remembered, and the memory is emptied at its limit."""
    monkeypatch.setattr(fast_envelope, "_WORKSPACES", {})
    monkeypatch.setattr(fast_envelope, "WORKSPACES_KEPT", 2)
    first = orjson.loads(b'{"event_id":"e1","type":"message.sent","workspace_id":"ws1",'
                         b'"contact_id":"c1","occurred_at":"2026-11-24T10:00:00Z",'
                         b'"actor":{"type":"user"},"channel":{"type":"sms"}}')
    second = orjson.loads(orjson.dumps(first))
    a, b = fast_values(first), fast_values(second)
    assert a is not None and b is not None and a == b
    assert first["workspace_id"] is not second["workspace_id"]
    assert a[2] is b[2] is first["workspace_id"]
    kinds = {value: value for value in fast_envelope.TYPES | fast_envelope.CHANNEL_TYPES
             | fast_envelope.ACTOR_TYPES}
    assert a[1] is b[1] is kinds["message.sent"] and a[5] is kinds["sms"]
    assert a[7] is kinds["user"]
    for _ in range(2):  # refused each time, never remembered
        assert fast_values({**first, "workspace_id": "ws 1"}) is None
    assert list(fast_envelope._WORKSPACES) == ["ws1"]
    for ws in ("ws2", "ws3"):
        assert fast_values({**first, "workspace_id": ws}) is not None
    assert list(fast_envelope._WORKSPACES) == ["ws3"]  # emptied at 2, then ws3
    assert fast_values({**first, "workspace_id": "ws1"}) == a


# ---------------------------------------------------------------- bad input: reasons as before

CASES_FILE = Path(__file__).with_name("fast_path_reasons.json")
#: the verdict of each case below before the fast path existed (main at dc90244)
EXPECTED: dict[str, str] = json.loads(CASES_FILE.read_text(encoding="utf-8"))

V = ('{"event_id":"e1","type":"message.sent","workspace_id":"ws1","contact_id":"c1",'
     '"occurred_at":"2026-11-24T10:00:00Z","actor":{"type":"user","id":"u1"}')


def env(extra: str = "") -> str:
    return V + extra + "}"


def _kind(kind: str, data: bytes) -> bytes:
    return env().replace('"message.sent"', f'"{kind}"').encode()[:-1] + b',"data":' + data + b"}"


CASES: list[tuple[str, bytes]] = [
    ("valid", env().encode()),
    ("BOM", b"\xef\xbb\xbf" + env().encode()),
    ("not UTF-8", env().encode().replace(b'"e1"', b'"e\xff1"')),
    ("NaN", env(',"data":{"x":NaN}').encode()),
    ("Infinity", env(',"data":{"x":-Infinity}').encode()),
    ("huge integer", env(',"data":{"x":' + "9" * 400 + "}").encode()),
    ("huge exponent", env(',"data":{"x":1e400}').encode()),
    ("duplicate keys, invalid last", env(',"type":"message.teleported"').encode()),
    ("duplicate keys, valid last", ('{"type":"bogus",' + env()[1:]).encode()),
    ("nested junk", env(',"data":{"x":' + "[" * 2000 + "]" * 2000 + "}").encode()),
    ("nested junk, shallow", env(',"junk":{"a":[1,{"b":[null,true,{"c":"d"}]}]}').encode()),
    ("lone surrogate", env().replace('"e1"', '"e\\ud800"').encode()),
    ("NUL escape", env().replace('"e1"', '"e\\u00001"').encode()),
    ("NUL in text (not stored)", env(',"data":{"text":"a\\u0000b"}').encode()),
    ("workspace with newline", env().replace('"ws1"', '"ws1\\n"').encode()),
    ("event_id of 201", env().replace('"e1"', '"' + "x" * 201 + '"').encode()),
    ("event_id of 200 astral", env().replace('"e1"', '"' + "\U0001f600" * 200 + '"').encode()),
    ("array", b"[" + env().encode() + b"]"),
    ("string", b'"hello"'),
    ("number", b"42"),
    ("empty", b""),
    ("blank", b"  \n"),
    ("trailing garbage", env().encode() + b" x"),
    ("control character", env().replace('"e1"', '"e\t1"').encode()),
    ("channel as a list", env(',"channel":["sms"]').encode()),
    ("actor not allowed", env().replace('"user"', '"contact"').encode()),
    ("no offset", env().replace("10:00:00Z", "10:00:00").encode()),
    ("February 30", env().replace("11-24", "02-30").encode()),
    ("after year 9999 in UTC", env().replace("2026-11-24T10:00:00Z",
                                            "9999-12-31T23:59:59-01:00").encode()),
    ("lower-case t and z", env().replace("T10:00:00Z", "t10:00:00z").encode()),
    ("nanoseconds", env().replace("10:00:00Z", "10:00:00.123456789+05:30").encode()),
    ("type as a number", env().replace('"message.sent"', "1").encode()),
    ("event_id as a number", env().replace('"e1"', "1").encode()),
    ("data as a list", env(',"data":[]').encode()),
    ("assign, assignee a number", _kind("conversation.assign", b'{"assignee_id":7}')),
    ("markdone maybe", _kind("dialogflow.response", b'{"parameters":{"RB_MARKDONE":"maybe"}}')),
    ("three problems", b'{"type":"x","workspace_id":"w w","occurred_at":5}'),
]


def test_every_case_has_its_expected_verdict() -> None:
    assert [name for name, _ in CASES] == list(EXPECTED)


@pytest.mark.parametrize(("name", "raw"), CASES, ids=[name for name, _ in CASES])
def test_bad_input_gets_the_same_reason_as_before(name: str, raw: bytes) -> None:
    for form in (raw, raw.decode("utf-8", errors="surrogateescape")):
        result = parse(form)
        agree(form, result)
        verdict = result.reason if isinstance(result, Invalid) else type(result).__name__
        assert verdict == EXPECTED[name]


@pytest.mark.parametrize(("name", "raw"), CASES, ids=[name for name, _ in CASES])
def test_an_http_item_gets_the_same_reason_as_a_line(name: str, raw: bytes) -> None:
    try:
        items = parse_body(b"[" + raw + b"]")
    except ApiError as exc:  # JSON that is not JSON refuses the whole body (400)
        assert exc.status == 400 and EXPECTED[name].startswith("malformed JSON")
        return
    assert len(items) == 1 or EXPECTED[name].startswith("malformed JSON")
    item = items[0]
    if EXPECTED[name] == "envelope must be a JSON object, got list":
        return  # an array in the array: its items are parsed one by one
    verdict = item.reason if isinstance(item, Invalid) else type(item).__name__
    assert verdict == EXPECTED[name]


# ---------------------------------------------------------------- derived from the model


def test_the_limits_are_read_from_the_model() -> None:
    assert fast_envelope.EVENT_ID == fast_envelope.CONTACT_ID == (1, 200)
    enums = [set(model.model_json_schema()["properties"]["type"]["enum"])
             for model in (GatewayEnvelope, Channel, Actor)]
    assert enums == [fast_envelope.TYPES, fast_envelope.CHANNEL_TYPES, fast_envelope.ACTOR_TYPES]
    assert fast_envelope.WORKSPACE("a" * 64) and not fast_envelope.WORKSPACE("a" * 65)


class _Wider(GatewayEnvelope):
    event_id: Annotated[str, Field(min_length=1, max_length=300)]


class _Extra(GatewayEnvelope):
    locale: str | None = None


class _Loose(GatewayEnvelope):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)


class _Unanchored(GatewayEnvelope):
    workspace_id: Annotated[str, Field(pattern=r"^[a-z]+")]


def test_a_changed_limit_is_followed() -> None:
    assert fast_envelope._length(_Wider.model_fields["event_id"]) == (1, 300)


@pytest.mark.parametrize("model", [_Extra, _Loose])
def test_a_model_with_other_fields_or_config_is_refused(model: type[GatewayEnvelope]) -> None:
    with pytest.raises(TypeError, match=r"update the fast path|strict"):
        fast_envelope._derive(model)


def test_a_pattern_the_fast_path_cannot_mirror_is_refused() -> None:
    with pytest.raises(TypeError, match="anchored"):
        fast_envelope._pattern(_Unanchored.model_fields["workspace_id"])
