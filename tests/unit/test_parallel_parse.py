"""What crosses a process boundary in a bulk import (parsed items, outcomes) comes back equal."""

from __future__ import annotations

import io
import pickle
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.generate import Generator, write
from schemas.commands import COMMAND_CLASSES, ReceiveMessage
from schemas.construct import construct, from_values
from services.bulk_import.parse import ParallelParser, pack, unpack
from services.conversation.adapters.sqlite_recorder import _isoformat, packed_outcome
from services.conversation.application.ports import Outcome
from services.ingest.domain.normalise import Invalid, parse

LINES = [
    {"event_id": "e1", "workspace_id": "w", "contact_id": "c", "type": "message.received",
     "occurred_at": "2026-10-01T08:00:00+02:00", "channel": {"type": "viber", "id": "v1"},
     "data": {"message_id": "m1"}},
    {"event_id": "e2", "workspace_id": "w", "contact_id": "c", "type": "conversation.assign",
     "occurred_at": "2026-10-01T08:00:01Z", "actor": {"type": "user", "id": "a"},
     "data": {"assignee_id": None, "team_id": "t"}},
    {"event_id": "e3", "workspace_id": "w", "contact_id": "c", "type": "dialogflow.response",
     "occurred_at": "2026-10-01T08:00:02Z", "actor": {"type": "dialogflow"},
     "data": {"parameters": {"RB_MARKDONE": "true"}}},
    {"event_id": "e4", "workspace_id": "w", "contact_id": "c", "type": "contact.merge",
     "occurred_at": "2026-10-01T08:00:03Z", "actor": {"type": "user"},
     "data": {"secondary_contact_id": "d"}},
]
RAW = [orjson.dumps(line) for line in LINES] + [b"{not json", b'{"type": "welcome"}']


@pytest.mark.parametrize("raw", RAW)
def test_pack_then_unpack_gives_an_equal_item(raw: bytes) -> None:
    item = parse(raw)
    again = unpack(pickle.loads(pickle.dumps(pack(item))))
    assert type(again) is type(item)
    assert again == item
    if not isinstance(item, Invalid):
        assert again.model_dump() == item.model_dump()
        assert orjson.loads(again.model_dump_json()) == orjson.loads(item.model_dump_json())


def test_every_command_class_round_trips() -> None:
    assert {type(parse(raw)).__name__ for raw in RAW[:4]} <= {c.__name__ for c in COMMAND_CLASSES}


def test_from_values_builds_a_frozen_model_equal_to_construct() -> None:
    built = construct(ReceiveMessage, workspace_id="w", contact_id="c", event_id="e",
                      event_type="message.received", occurred_at=parse(RAW[0]).occurred_at,
                      channel_type="viber")
    fields = tuple(ReceiveMessage.model_fields)
    again = from_values(ReceiveMessage, fields, [built.__dict__[f] for f in fields])
    assert again == built
    with pytest.raises(Exception, match="frozen"):
        again.contact_id = "other"  # type: ignore[misc]
    assert again.model_fields_set is not from_values(
        ReceiveMessage, fields, [built.__dict__[f] for f in fields]).model_fields_set


def test_the_worker_process_parses_in_input_order() -> None:
    # many more batches than the parser keeps in flight (3), of uneven sizes, with
    # invalid lines and duplicates among them: every batch comes back with its own
    # raw lines, in input order, parsed as the importing process would parse them
    out_buffer = io.BytesIO()
    write(Generator(events=2_000, contacts=50, workspaces=2, seed=5), out_buffer)
    lines = out_buffer.getvalue().splitlines() + RAW
    sizes = [1, 7, 50, 3, 120, 2]
    batches: list[list[bytes]] = []
    start = 0
    while start < len(lines):
        size = sizes[len(batches) % len(sizes)]
        batches.append(lines[start:start + size])
        start += size
    assert len(batches) > 10 * 3
    with ParallelParser() as parser:
        out = list(parser.map(iter(batches)))
    assert [raw for raw, _ in out] == batches
    parsed = [item for _, items in out for item in items]
    expected = [parse(raw) for raw in lines]
    assert parsed == expected
    assert sum(isinstance(item, Invalid) for item in expected) > 2  # RAW has two


@given(st.datetimes(timezones=st.just(UTC)) | st.datetimes(timezones=st.timezones()))
def test_a_packed_outcome_stores_the_same_time_text(moment: datetime) -> None:
    outcome = Outcome("ws1", "e1", "c1", "message.received", moment, "accepted", None)
    packed = packed_outcome(outcome)
    assert packed[:4] == outcome[:4] and packed[5:] == outcome[5:]
    assert _isoformat(packed[4]) == moment.isoformat()
    if moment.tzinfo is UTC:
        assert isinstance(packed[4], int)  # the cheap form when it is UTC
