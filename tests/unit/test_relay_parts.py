"""The relay publishes a stored event with the key and headers of its model.

``stored_parts`` (the relay's hot path) reads only the key, the headers and the
schema version from the stored JSON (msgspec, the other fields skipped); these
tests pin that what it publishes is :func:`event_record` of the decoded event
(the value: the stored bytes as they are), on events hypothesis generates from
each class's field types, and for rows of an older schema version (upcast and
written again) or JSON the fast read refuses (the model decides, as before).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings

from schemas.events import DomainEvent, decode_event, encode_event
from services.projections.entrypoints.relay import event_record, stored_parts

from .test_event_json import events

TOPIC = "bonychat.conversation.events.v1"


def expected(state: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    record = event_record(TOPIC, decode_event(state))
    return record.key or b"", record.value, list(record.headers or [])


@settings(max_examples=300)
@given(events())
def test_stored_parts_are_the_record_of_the_decoded_event(event: DomainEvent) -> None:
    try:
        state = encode_event(event)
        want = expected(state)
    except Exception:  # not storable or not valid as stored JSON: never stored
        return
    key, value, headers = stored_parts(TOPIC, state)
    assert (key, list(headers)) == (want[0], want[2])
    assert value is state  # the stored bytes are published as they are


def v1_state() -> bytes:
    return orjson.dumps({
        "event_type": "MessageReceived", "event_id": "e-1", "workspace_id": "ws:1",
        "contact_id": "c\u00e9 1", "aggregate_version": 3,
        "occurred_at": "2026-10-01T08:00:00Z", "source_event_id": "g-1",
        "conversation_id": "k-1", "message_id": None})


def test_an_older_version_is_upcast_and_written_again() -> None:
    state = v1_state()
    key, value, headers = stored_parts(TOPIC, state)
    assert (key, value, list(headers)) == expected(state)
    assert key == "ws:1:c\u00e9 1".encode()
    assert value != state and orjson.loads(value)["schema_version"] == 2
    assert dict(headers) == {"event_id": b"e-1", "event_type": b"MessageReceived"}


def test_json_the_fast_read_refuses_goes_to_the_model() -> None:
    payload = orjson.loads(v1_state())
    payload["schema_version"] = "2"  # not an integer: the fast read refuses it
    state = orjson.dumps(payload)
    with pytest.raises(ValueError):  # the model's verdict, as before the fast read
        stored_parts(TOPIC, state)
    current = {**payload, "schema_version": 2,
               "occurred_at": datetime(2026, 10, 1, 8, tzinfo=UTC).isoformat()}
    del current["event_type"]  # no type: the fast read refuses, the model raises
    with pytest.raises(ValueError):
        stored_parts(TOPIC, orjson.dumps(current))
