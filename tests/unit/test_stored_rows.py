"""``row_event`` (the replay workers' msgspec decoder) accepts only what ``trusted_payload``
trusts, with the same values for every field, and the workers' loop gives the rows of
projecting decoded events, whichever way each stored event goes."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
import pytest
from fakes import FakeReadModelStore
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import decode_event
from schemas.moments import to_micros
from schemas.stored_rows import row_event
from services.conversation.application.ports import Position
from services.projections.application import replay
from services.projections.application.projector import ConversationProjection
from services.projections.application.replay_cells import links
from services.projections.domain.row_cells import CellRow, CellSums, merged_rows
from services.projections.domain.rows import ConversationRow, trusted_payload
from tests.unit.test_projection_stored import _stored

STATES = _stored(4_000)
#: some of every kind, the rare ones (merges) included
SAMPLE = STATES[:200] + [s for s in STATES if b'"Contact' in s]


def _same_fields(state: bytes) -> None:
    """If ``row_event`` accepts ``state``, ``trusted_payload`` trusts it with the same values."""
    fast = row_event(state)
    if fast is None:
        return
    old = trusted_payload(state)
    assert isinstance(old, dict), state
    assert {*fast.__struct_fields__, "event_type"} == set(old)
    for key, theirs in old.items():
        if "conversation_id" not in old and key not in ("occurred_at", "schema_version"):
            continue  # a kind the rows never read: its fields are left as JSON gave them
        mine = fast[key]
        value = to_micros(theirs) if isinstance(theirs, datetime) else theirs  # untimed kinds
        assert mine == value and type(mine) is type(value), (key, mine, value)


def test_every_stored_event_of_random_lifecycles_is_decoded_the_same() -> None:
    kinds = set()
    for state in STATES:
        assert row_event(state) is not None  # what encode_event writes: all of it
        _same_fields(state)
        kinds.add(orjson.loads(state)["event_type"])
    assert {"ConversationOpened", "MessageReceived", "MessageSent", "ConversationAssigned",
            "ConversationClosed", "ContactMerged"} <= kinds


_ODD_VALUES = st.sampled_from([
    None, 0, 1, 2.0, True, False, "", "x", [], {}, 1 << 70, -(1 << 63) - 1,
    "2026-11-24T10:00:00+00:00", "2026-11-24T10:00:00.123Z", "2026-11-24T10:00:60Z",
    "2026-11-24 10:00:00Z", "2026-11-24T10:00:00", "2026-11-24T10:00:00.000000Z",
    "ConversationOpened", "MessageSent", "user", "merge", "contact"])


def _json(value: Any) -> bytes:
    """JSON as encode_event spells it (stdlib: orjson refuses integers over 64 bits)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SAMPLE), st.data())
def test_damaged_stored_events_are_never_trusted_differently(state: bytes,
                                                             data: st.DataObject) -> None:
    payload: dict[str, Any] = orjson.loads(state)
    action = data.draw(st.sampled_from(["drop", "add", "change", "duplicate"]))
    key = data.draw(st.sampled_from(sorted(payload)))
    if action == "drop":
        del payload[key]
    elif action == "add":
        payload[data.draw(st.sampled_from(["x", "conversation_id", "channel", "team_id"]))] = 1
    elif action == "change":
        payload[key] = data.draw(_ODD_VALUES)
    damaged = _json(payload)
    if action == "duplicate":  # the same key twice: the last one counts, for both
        damaged = damaged[:-1] + b"," + _json({key: data.draw(_ODD_VALUES)})[1:]
    _same_fields(damaged)
    if action == "drop" or (action == "add" and orjson.loads(damaged).keys() != payload.keys()):
        assert row_event(damaged) is None


def test_what_it_refuses_is_what_trusted_payload_decodes_or_reads_its_own_way() -> None:
    opened = orjson.loads(next(s for s in STATES if b"ConversationOpened" in s))
    offset = orjson.dumps({**opened, "occurred_at": "2026-11-24T10:00:00+00:00"})
    assert row_event(offset) is None and isinstance(trusted_payload(offset), dict)
    older = {**opened, "schema_version": 1}
    del older["recontact"]
    assert row_event(orjson.dumps(older)) is None
    assert not isinstance(trusted_payload(orjson.dumps(older)), dict)  # upcast and decoded
    assert row_event(b"not json") is None


class _Partition:
    def __init__(self, states: Sequence[bytes]) -> None:
        self.states = states

    def stream_partition(self, upto: int, part: int, parts: int, chunk: int = 20_000
                         ) -> Iterator[list[bytes]]:
        for start in range(0, len(self.states), 500):
            yield list(self.states[start:start + 500])


class _Copier:
    def __init__(self) -> None:
        self.rows: list[ConversationRow] = []
        self.copies = 0
        self.cells: list[CellRow] = []

    def copy_rows(self, rows: Sequence[ConversationRow]) -> None:
        self.rows.extend(rows)
        self.copies += 1

    def copy_cells(self, cells: Iterable[CellRow]) -> int:
        self.cells.extend(cells)
        return len(self.cells)


def _one_worker(copier: _Copier) -> tuple[Any, Any]:
    """The cells link of a replay with one worker, and the parent's end of its pipe."""
    made, readers, ends = links(multiprocessing.get_context("fork"), 1, copier)
    return (made[0], ends), readers[0]


def _every_other_odd(states: list[bytes]) -> list[bytes]:
    """Every other timed event with its time as ``+00:00`` (``row_event`` refuses it)."""
    out = []
    for number, state in enumerate(states):
        payload = orjson.loads(state)
        if number % 2 and payload["occurred_at"].endswith("Z"):
            payload["occurred_at"] = payload["occurred_at"][:-1] + "+00:00"
            out.append(orjson.dumps(payload))
        else:
            out.append(state)
    return out


@pytest.mark.parametrize("flush", [50, 20_000])
def test_a_workers_rows_equal_the_projection_of_decoded_events(
        flush: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever way each event is decoded, and however many copies run beside the
    projecting (``flush``: closed rows per copy), the rows and cells are the same."""
    monkeypatch.setattr(replay, "FLUSH_ROWS", flush)
    for states in (STATES, _every_other_odd(STATES)):
        copier = _Copier()
        counter = multiprocessing.get_context("fork").Value("q", 0)
        link, mine = _one_worker(copier)
        replay._project_partition(_Partition(states), copier, (len(states), 0, 1), counter,
                                  link)
        expected = FakeReadModelStore()
        ConversationProjection(expected).apply([decode_event(s) for s in states],
                                               Position("p", len(states)))
        assert counter.value == len(states)
        assert len(copier.rows) == len(expected.rows) > 100
        assert copier.copies >= (2 if flush == 50 else 1)
        assert {row.conversation_id: row.public() for row in copier.rows} == {
            cid: row.public() for cid, row in expected.rows.items()}
        sums = CellSums()
        sums.add(expected.rows.values())
        every = list(merged_rows([sums.summed()]))
        assert mine.recv() == len(every) > 100  # the worker copied its cells: all of them
        assert sorted(copier.cells) == sorted(every)


def test_a_copy_that_fails_beside_the_projecting_fails_the_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "FLUSH_ROWS", 50)

    class Failing(_Copier):
        def copy_rows(self, rows: Sequence[ConversationRow]) -> None:
            raise RuntimeError("connection lost")

    counter = multiprocessing.get_context("fork").Value("q", 0)
    failing = Failing()
    link, mine = _one_worker(failing)
    with pytest.raises(RuntimeError, match="connection lost"):
        replay._project_partition(_Partition(STATES), failing, (len(STATES), 0, 1), counter,
                                  link)
    assert not mine.poll()  # no cells: the parent sees no worker finished
