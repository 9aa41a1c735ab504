"""Fuzzing the envelope parser (``services.ingest.domain.normalise.parse``) with hypothesis.

Whatever bytes or text arrive, ``parse`` must return either a command or an
:class:`Invalid` carrying the raw text and a reason; it never raises. Every
valid input round-trips: the command survives the command topic's encoding, and
re-serialising the decoded JSON gives the same command.

The number of generated inputs is ``BONYCHAT_FUZZ_EXAMPLES`` in total, split
over the input families below by :data:`SHARE`. ``make test`` runs a few
thousand; ``make test-fuzz`` runs 100,000 or more (see docs/testing.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.command_codec import decode_command, read_command
from schemas.commands import CommandBase, CommandMessage
from schemas.envelope import ALLOWED_ACTORS, CHANNEL_REQUIRED
from services.ingest.domain.fast_envelope import fast_values
from services.ingest.domain.normalise import MAX_INPUT_BYTES, Invalid, parse, parse_by_model
from services.runtime.sinks import encode_command

from .test_envelope import ACTORS, CHANNELS, EVENT_TYPES

TOTAL = int(os.environ.get("BONYCHAT_FUZZ_EXAMPLES", "3000"))
#: share of TOTAL per input family (sums to 1)
SHARE = {"valid": 0.30, "near_valid": 0.30, "bytes": 0.08, "json": 0.08, "nesting": 0.06,
         "numbers": 0.06, "unicode": 0.06, "utf8": 0.06}
#: examples each family actually ran (checked after each run)
RAN: dict[str, int] = {}


def examples(family: str) -> int:
    return max(1, int(TOTAL * SHARE[family]))


def fuzz(family: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """hypothesis settings for one family: its share of TOTAL, no deadline, no database."""
    return settings(max_examples=examples(family), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------- the property


def check(raw: str | bytes) -> CommandBase | Invalid:
    """The property every input must satisfy; returns the outcome for further checks."""
    result = parse(raw)  # must not raise
    agree(raw, result)
    if isinstance(result, Invalid):
        assert isinstance(result.reason, str) and result.reason.strip()
        expected = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
        assert result.raw == expected, "the dead letter must keep the raw input"
        assert result.workspace_id is None or isinstance(result.workspace_id, str)
        assert result.event_id is None or isinstance(result.event_id, str)
        return result
    assert isinstance(result, CommandBase), f"parse returned {type(result).__name__}"
    # the command topic's encoding round-trips
    decoded = CommandMessage.model_validate_json(encode_command(result)).body
    assert decoded.model_dump() == result.model_dump()
    assert type(decoded) is type(result)
    return result


def agree(raw: str | bytes, result: CommandBase | Invalid) -> None:
    """The fast path (``parse``) and the model alone (``parse_by_model``) agree on ``raw``.

    Same verdict, the same dead letter (raw text, reason, ids) or the same command
    (class, values in the same order, fields set, bytes on the command topic);
    and the fast check itself accepts exactly what the model accepts, so the
    valid inputs really take the fast path.
    """
    reference = parse_by_model(raw)
    if isinstance(reference, Invalid):
        assert result == reference
    else:
        assert type(result) is type(reference)
        assert list(result.__dict__.items()) == list(reference.__dict__.items())
        assert result.model_fields_set == reference.model_fields_set
        assert encode_command(result) == encode_command(reference)
        same_command(encode_command(result))
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    has_nul = (b"\\u0000" if isinstance(raw, bytes) else "\\u0000") in raw  # type: ignore[operator]
    if isinstance(obj, dict) and not has_nul and len(raw) <= MAX_INPUT_BYTES:
        assert (fast_values(obj) is not None) == (not isinstance(reference, Invalid))


def same_command(record: bytes | str) -> None:
    """The fast command decoder and the model agree on one command record.

    The fast decoder may only decline (``None``: the model decides); what it
    accepts, the model accepts with the same class, values in the same order
    (times the same instant and offset, in ``datetime.UTC``) and fields set. A
    record as ingest writes it always takes the fast path.
    """
    fast = decode_command(record)
    try:
        model: CommandBase | None = CommandMessage.model_validate_json(record).body
    except ValidationError:
        model = None
    if fast is None:
        assert model is None or not _canonical(record, model)
        return
    assert model is not None and type(fast) is type(model)
    assert list(fast.__dict__.items()) == list(model.__dict__.items())
    assert [type(v) for v in fast.__dict__.values()] == [type(v) for v in model.__dict__.values()]
    assert fast.occurred_at.utcoffset() == model.occurred_at.utcoffset()
    assert fast.occurred_at.tzinfo is UTC  # the model's is pydantic's TzInfo(0): same offset
    assert fast.model_fields_set == model.model_fields_set
    assert read_command(record).__dict__ == fast.__dict__


def _canonical(record: bytes | str, model: CommandBase) -> bool:
    """``record`` is how ingest writes ``model`` (times in UTC)."""
    def text(raw: bytes | str) -> bytes:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)

    return text(record) == text(encode_command(model)) and not model.occurred_at.utcoffset()


def count(family: str) -> None:
    RAN[family] = RAN.get(family, 0) + 1


def ran_enough(family: str) -> None:
    assert RAN.get(family, 0) >= examples(family) * 0.9, (family, RAN.get(family))


# ---------------------------------------------------------------- strategies

#: storable text: no NUL and no lone surrogate (JSON cannot carry the latter as UTF-8)
TEXT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
ODD_CHARS = st.sampled_from(["\u200b", "\u202e", "\ufeff", "\U0001f600", "e\u0301", "\u0130",
                             "\uffff", "\U0010ffff", "\u2028", "\u2029", "\x7f", "\"", "\\"])
ids = st.text(TEXT_CHARS, min_size=1, max_size=40) | st.text(TEXT_CHARS, min_size=190,
                                                               max_size=200)
workspaces = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
timestamps = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
                                          f"{frac}{off}",
    st.integers(2, 9998), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23),
    st.integers(0, 59), st.integers(0, 59),
    st.sampled_from(["", ".5", ".123456", ".123456789"]),
    st.sampled_from(["Z", "z", "+00:00", "-05:30", "+14:00"]))
json_leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(TEXT_CHARS, max_size=20))
json_values = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(TEXT_CHARS, max_size=8), inner, max_size=4), max_leaves=12)


def _actor_for(kind: str) -> st.SearchStrategy[dict[str, Any] | None]:
    allowed = ALLOWED_ACTORS.get(kind, frozenset({None, *ACTORS}))
    choices = sorted(allowed, key=lambda a: a or "")
    return st.sampled_from(choices).flatmap(
        lambda a: st.none() if a is None else st.fixed_dictionaries(
            {"type": st.just(a)}, optional={"id": st.none() | ids}))


def _data_for(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    opt_text = st.none() | st.text(TEXT_CHARS, max_size=50)
    if kind == "message.received":
        return st.fixed_dictionaries({}, optional={"message_id": opt_text, "text": opt_text})
    if kind == "message.sent":
        return st.fixed_dictionaries({}, optional={"text": opt_text})
    if kind == "conversation.close":
        return st.fixed_dictionaries({}, optional={"category": opt_text, "summary": opt_text})
    if kind == "conversation.assign":
        return st.fixed_dictionaries({"assignee_id": st.none() | ids},
                                     optional={"team_id": st.none() | ids})
    if kind == "dialogflow.response":
        flag = st.sampled_from([None, "", True, False, "true", "FALSE", "True"])
        return st.fixed_dictionaries({}, optional={"parameters": st.fixed_dictionaries(
            {}, optional={"RB_MARKDONE": flag, "other": json_values})})
    if kind == "contact.merge":
        return st.fixed_dictionaries({"secondary_contact_id": ids})
    return st.dictionaries(st.text(TEXT_CHARS, max_size=8), json_values, max_size=3)


@st.composite
def valid_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(EVENT_TYPES))
    env: dict[str, Any] = {"event_id": draw(ids), "type": kind, "workspace_id": draw(workspaces),
                           "contact_id": draw(ids), "occurred_at": draw(timestamps)}
    channel = {"type": draw(st.sampled_from(CHANNELS))}
    if draw(st.booleans()):
        channel["id"] = draw(st.none() | ids)
    if kind in CHANNEL_REQUIRED or draw(st.booleans()):
        env["channel"] = channel
    actor = draw(_actor_for(kind))
    if actor is not None or draw(st.booleans()):
        env["actor"] = actor
    data = draw(_data_for(kind))
    if data or kind in ("conversation.assign", "contact.merge") or draw(st.booleans()):
        env["data"] = data
    if draw(st.booleans()):  # unknown keys are ignored
        env[draw(st.text(TEXT_CHARS, min_size=1, max_size=8).filter(
            lambda k: k not in env))] = draw(json_values)
    return env


def _set_path(env: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    copy = deepcopy(env)
    target = copy
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    return copy


PATHS = [["event_id"], ["type"], ["workspace_id"], ["contact_id"], ["occurred_at"],
         ["channel"], ["channel", "type"], ["channel", "id"], ["actor"], ["actor", "type"],
         ["actor", "id"], ["data"], ["data", "message_id"], ["data", "assignee_id"],
         ["data", "team_id"], ["data", "category"], ["data", "secondary_contact_id"],
         ["data", "parameters"], ["data", "parameters", "RB_MARKDONE"]]
near_values = (json_values | st.text(max_size=300) | st.sampled_from(
    ["", "\x00", "a\x00b", "x" * 201, "2026-11-24T10:00:00", "2026-02-30T10:00:00Z",
     "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z", "2026-11-24 10:00:00Z",
     "MESSAGE.RECEIVED", "bot", "sms ", "ws 1", "ws/1", "ws1\n", "true", "maybe", 0, -1,
     2**64, 1e308, [], {}, [None]]))


@st.composite
def near_valid_envelopes(draw: st.DrawFn) -> dict[str, Any] | list[Any]:
    env = draw(valid_envelopes())
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "set", "set", "wrap"]))
        if action == "drop":
            key = draw(st.sampled_from(sorted(env)))
            env = {k: v for k, v in env.items() if k != key}
        elif action == "set":
            env = _set_path(env, draw(st.sampled_from(PATHS)), draw(near_values))
        else:
            return [env]  # an array is not an envelope
    return env


def _dump(value: Any) -> bytes:
    """JSON text of ``value`` (the stdlib writes integers beyond 64 bits too)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# ---------------------------------------------------------------- the runs


def test_valid_envelopes_parse_and_round_trip() -> None:
    @fuzz("valid")
    @given(valid_envelopes(), st.booleans())
    def run(env: dict[str, Any], as_text: bool) -> None:
        count("valid")
        raw = _dump(env)
        result = check(raw.decode() if as_text else raw)
        assert not isinstance(result, Invalid), (env, result.reason)
        assert (result.workspace_id, result.event_id) == (env["workspace_id"], env["event_id"])
        # the same JSON, re-serialised (other key order, escapes), is the same command
        again = parse(orjson.dumps(dict(reversed(orjson.loads(raw).items()))))
        assert isinstance(again, CommandBase) and again.model_dump() == result.model_dump()
        escaped = parse(json.dumps(env, ensure_ascii=True))
        assert isinstance(escaped, CommandBase) and escaped.model_dump() == result.model_dump()

    run()
    ran_enough("valid")


def test_near_valid_envelopes_never_raise() -> None:
    @fuzz("near_valid")
    @given(near_valid_envelopes())
    def run(env: Any) -> None:
        count("near_valid")
        check(_dump(env))

    run()
    ran_enough("near_valid")


def test_random_bytes_never_raise() -> None:
    @fuzz("bytes")
    @given(st.binary(max_size=400) | st.text(max_size=200))
    def run(raw: bytes | str) -> None:
        count("bytes")
        result = check(raw)
        if isinstance(raw, bytes) and not raw.strip().startswith(b"{"):
            assert isinstance(result, Invalid)

    run()
    ran_enough("bytes")


def test_arbitrary_json_values_never_raise() -> None:
    @fuzz("json")
    @given(json_values | st.dictionaries(st.sampled_from(
        ["event_id", "type", "workspace_id", "contact_id", "occurred_at", "channel", "actor",
         "data"]), json_values))
    def run(value: Any) -> None:
        count("json")
        result = check(_dump(value))
        if not isinstance(value, dict):
            assert isinstance(result, Invalid) and "JSON object" in result.reason

    run()
    ran_enough("json")


def test_deep_nesting_never_raises() -> None:
    @fuzz("nesting")
    @given(st.integers(1, 5000), st.sampled_from(["[", "{\"a\":"]),
           st.sampled_from(["top", "data", "channel"]), valid_envelopes())
    def run(depth: int, opener: str, where: str, env: dict[str, Any]) -> None:
        count("nesting")
        closer = "]" if opener == "[" else "}"
        nested = opener * depth + "1" + closer * depth
        if where == "top":
            raw = nested
        else:
            text = _dump({**env, where: "@@"}).decode()
            raw = text.replace('"@@"', nested, 1)
        result = check(raw.encode())
        if depth > 1024:  # deeper than any parser here accepts
            assert isinstance(result, Invalid)

    run()
    ran_enough("nesting")


def test_huge_and_odd_numbers_never_raise() -> None:
    number = st.one_of(
        st.integers(1, 5000).map(lambda n: "9" * n),
        st.integers(1, 5000).map(lambda n: "-" + "1" * n),
        st.integers(-99999, 99999).map(lambda e: f"1e{e}"),
        st.sampled_from(["1e309", "-1e309", "NaN", "Infinity", "-0", "0.0e0", "01", "1.",
                         ".5", "+1", "0x10", "1_000", str(2**64), str(-(2**63) - 1)]))
    field = st.sampled_from(["event_id", "workspace_id", "contact_id", "occurred_at", "type",
                             "data", "channel", "actor", "extra"])

    @fuzz("numbers")
    @given(number, field, valid_envelopes())
    def run(literal: str, key: str, env: dict[str, Any]) -> None:
        count("numbers")
        text = _dump({**env, key: "@@"}).decode()
        check(text.replace('"@@"', literal, 1).encode())

    run()
    ran_enough("numbers")


def test_odd_unicode_never_raises() -> None:
    odd_text = st.lists(ODD_CHARS | st.characters(), min_size=1, max_size=30).map("".join)
    field = st.sampled_from(["event_id", "workspace_id", "contact_id", "type", "occurred_at"])

    @fuzz("unicode")
    @given(odd_text, field, valid_envelopes(), st.sampled_from(["utf8", "escaped", "str"]))
    def run(value: str, key: str, env: dict[str, Any], form: str) -> None:
        count("unicode")
        if form == "escaped":  # every char as a JSON \u escape, lone surrogates included
            escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else
                              "".join(f"\\u{u:04x}" for u in _utf16(c)) for c in value)
            raw: str | bytes = _dump({**env, key: "@@"}).decode().replace(
                '"@@"', f'"{escaped}"', 1).encode()
        elif form == "str":  # a Python str, surrogates and all
            raw = _dump({**env, key: "@@"}).decode().replace('"@@"', f'"{value}"', 1)
        else:
            raw = _dump({**env, key: "@@"}).replace(
                b'"@@"', b'"' + value.encode("utf-8", "surrogatepass") + b'"', 1)
        check(raw)

    run()
    ran_enough("unicode")


def _utf16(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc3", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82"]


def test_invalid_utf8_never_raises_and_keeps_the_text() -> None:
    @fuzz("utf8")
    @given(valid_envelopes(), st.sampled_from(INVALID_UTF8), st.integers(0, 10_000))
    def run(env: dict[str, Any], bad: bytes, where: int) -> None:
        count("utf8")
        raw = _dump(env)
        at = where % (len(raw) + 1)
        result = check(raw[:at] + bad + raw[at:])
        assert isinstance(result, Invalid)
        assert "\ufffd" in result.raw  # the bad bytes are replaced, the rest is kept

    run()
    ran_enough("utf8")
