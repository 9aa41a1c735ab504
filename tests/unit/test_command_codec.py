"""The fast command decoder (``schemas.command_codec``) against ``CommandMessage``.

The fuzz suite (test_envelope_fuzz.agree) decodes the command of every valid
envelope it generates both ways. Here: damaged command records (a field
dropped, retyped, added; other times, wrappers, duplicate keys, bad bytes): the
fast decoder declines or agrees with the model, and the conversation service's
dead-letter reason for a record it cannot decode is the model's, as before.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas import command_codec
from schemas.command_codec import decode_command
from schemas.commands import CommandMessage, SendMessage
from services.composition import open_stores
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.entrypoints.kafka import decode
from services.ingest.domain.normalise import Invalid, describe, parse
from services.runtime.sinks import encode_command
from services.settings import Settings

from .test_envelope_fuzz import TOTAL, json_values, same_command, valid_envelopes

FIELDS = sorted({name for cls in command_codec.COMMAND_CLASSES for name in cls.model_fields})
ODD = ["", "x", None, True, False, 0, 1, 2, 1.0, "1", "true", [], {}, ["x"],
       "2026-11-24T10:00:00Z", "2026-11-24T10:00:00.123456Z", "2026-11-24T10:00:00.5Z",
       "2026-11-24T10:00:00+00:00", "2026-11-24T10:00:00+05:30", "2026-11-24T10:00:00",
       "2026-11-24", "2026-11-24T10:00:60Z", "0000-01-01T00:00:00Z", "2026-02-30T10:00:00Z",
       "2026-11-24t10:00:00z", "2026-11-24 10:00:00Z", 1764000000, "ReceiveMessage",
       "SendMessage", "CloseConversation", "user", "dialogflow", "contact", "bot"]


@st.composite
def damaged_records(draw: st.DrawFn) -> bytes:
    command = parse(json.dumps(draw(valid_envelopes())))
    if not hasattr(command, "command"):
        return b"{}"
    message = orjson.loads(encode_command(command))
    body = message["body"]
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "set", "set", "set", "extra", "outer"]))
        if action == "drop" and body:
            body.pop(draw(st.sampled_from(sorted(body))))
        elif action == "set":
            body[draw(st.sampled_from(FIELDS))] = draw(st.sampled_from(ODD) | json_values)
        elif action == "extra":
            body[draw(st.text(max_size=5))] = draw(json_values)
        else:
            message[draw(st.sampled_from(["body", "x", ""]))] = draw(json_values)
    text = json.dumps(message, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", errors="surrogatepass")


def test_damaged_records_are_declined_or_decoded_as_the_model_does() -> None:
    @settings(max_examples=max(300, TOTAL // 3), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(damaged_records())
    def run(record: bytes) -> None:
        same_command(record)

    run()


def _record(**changes: Any) -> dict[str, Any]:
    command = parse(json.dumps({"event_id": "e1", "type": "message.sent", "workspace_id": "w",
                                "contact_id": "c", "occurred_at": "2026-11-24T10:00:00.25Z",
                                "actor": {"type": "user", "id": "u"}}))
    assert isinstance(command, SendMessage)
    message: dict[str, Any] = orjson.loads(encode_command(command))
    message["body"].update(changes)
    return message


RAW_CASES = [
    b"",
    b"\xef\xbb\xbf" + orjson.dumps(_record()),
    orjson.dumps(_record()).replace(b'"u"', b'"\xff"'),
    orjson.dumps(_record()).replace(b'"u"', b'"\\ud800"'),
    orjson.dumps(_record()).replace(b'"u"', b'"a\\u0000b"'),
    orjson.dumps(_record())[:-2] + b',"event_id":"e2"}}',
    orjson.dumps(_record())[:-2] + b',"event_id":7}}',
    orjson.dumps(_record())[:-1] + b',"body":{}}',
    b'{"body":' + orjson.dumps(_record()) + b"}",
    b"[" + orjson.dumps(_record()) + b"]",
    orjson.dumps(_record(schema_version=2)),
    orjson.dumps(_record(schema_version=True)),
    orjson.dumps(_record(command="ExpireInactive")),
    orjson.dumps(_record(command="Teleport")),
    orjson.dumps(_record(occurred_at="2026-11-24T10:00:00+01:00")),
    orjson.dumps(_record(occurred_at="2026-11-24T10:00:00")),  # no offset: refused
    orjson.dumps(_record(actor_id=None, actor_type=None)),
    orjson.dumps(_record(event_type=None)),
    orjson.dumps(_record()).replace(b'"schema_version":1,', b""),
    orjson.dumps(_record()) + b" ",
    orjson.dumps(_record()) + b"x",
]


@pytest.mark.parametrize("raw", RAW_CASES)
def test_odd_records_are_declined_or_decoded_as_the_model_does(raw: bytes) -> None:
    same_command(raw)
    same_command(raw.decode("utf-8", errors="replace"))


def test_what_ingest_writes_takes_the_fast_path() -> None:
    record = orjson.dumps(_record())
    command = decode_command(record)
    assert isinstance(command, SendMessage)
    assert command.occurred_at == datetime.fromisoformat("2026-11-24T10:00:00.250000+00:00")
    assert decode_command(orjson.dumps(_record(event_type=5))) is None
    assert decode_command(orjson.dumps(_record(spare=1))) is None  # extra='forbid'


class _Record:
    topic, partition, offset = "commands", 3, 42

    def __init__(self, value: bytes) -> None:
        self.value = value


@pytest.mark.parametrize("raw", RAW_CASES)
def test_an_undecodable_record_keeps_the_models_reason(raw: bytes) -> None:
    result = decode(_Record(raw))  # type: ignore[arg-type]
    try:
        CommandMessage.model_validate_json(raw)
    except ValidationError as exc:
        assert getattr(result, "reason", None) == (
            f"undecodable command at commands:3@42: {describe(exc)}")
    else:
        assert not hasattr(result, "reason")


def test_a_time_without_offset_is_dead_lettered_and_the_batch_goes_on(tmp_path: Path) -> None:
    """Found by the fuzz suite: the model took '2026-11-24T10:00:00' as a naive time,
    and deciding it beside aware times raised TypeError for the whole batch (a Kafka
    consumer would have stopped on that record, again at every restart)."""
    naive = decode(_Record(orjson.dumps(_record(occurred_at="2026-11-24T10:00:00",
                                               event_id="e0"))))  # type: ignore[arg-type]
    assert isinstance(naive, Invalid)
    assert "occurred_at must carry a UTC offset" in naive.reason
    good = decode(_Record(orjson.dumps(_record(event_id="e1"))))  # type: ignore[arg-type]
    assert isinstance(good, SendMessage)
    stores = open_stores(Settings(database_url=str(tmp_path / "naive.db")))
    try:
        result = BatchUnitOfWork(stores.events).process([naive, good], source="t")
    finally:
        stores.close()
    assert (result.accepted, result.invalid, len(result.dead_letters)) == (1, 1, 1)


def test_a_field_kind_the_decoder_does_not_know_is_refused() -> None:
    with pytest.raises(TypeError, match="teach it"):
        command_codec._type_of(list[int])

    class Strict(SendMessage):
        model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    with pytest.raises(TypeError, match="lax"):
        command_codec._struct(Strict)
    assert issubclass(Strict, BaseModel)


def _by_pattern(text: str) -> datetime | None:
    """What the decoder's time check was: the pattern, then ``fromisoformat``."""
    if re.search(command_codec.UTC_TIME, text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


ODD_CHARS = "0123456789-T:.Z\n\u0662\uff12,W+ zt"


def _changed(moment: datetime, at: int, char: str) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return text[:at] + char + text[at + 1:]


TIME_TEXTS = st.one_of(
    st.text(st.sampled_from(ODD_CHARS), min_size=18, max_size=28),
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.builds(_changed, st.datetimes(), st.integers(0, 26), st.sampled_from(ODD_CHARS)))


@settings(max_examples=2000, database=None)
@given(TIME_TEXTS)
def test_the_time_check_accepts_what_the_pattern_and_fromisoformat_accept(text: str) -> None:
    found, expected = command_codec.utc_time(text), _by_pattern(text)
    assert found == expected
    assert found is None or found.tzinfo is UTC


@pytest.mark.parametrize("text", [
    "2026-11-24T10:00:00Z", "2026-11-24T10:00:00.123456Z", "2026-11-24T10:00:00Z\n",
    "\u0662026-11-24T10:00:00Z", "2026-11-24T10:00:00,123456Z", "2026-W48-1T10:00:00Z",
    "2026-11-24T10:00:00.123Z", "2026-02-30T10:00:00Z", "2026-11-24T24:00:00Z"])
def test_the_time_check_on_chosen_forms(text: str) -> None:
    assert command_codec.utc_time(text) == _by_pattern(text)
