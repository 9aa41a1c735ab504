"""``pg_copy.write_rows`` sends exactly the bytes psycopg's own ``write_row`` path sends.

The ``COPY`` of a batch's outcomes and events formats every row with psycopg's C
row formatter into one buffer (one ``copy.write``) instead of one ``write_row``
call a row. Here both are run without a database on the same rows (generated:
text of any kind but NUL, times of any offset and precision, missing values,
ids, large integers, JSON bytes) and must give the same bytes: signature, rows
and trailer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import adapt, pq
from psycopg._copy_base import BinaryFormatter
from psycopg.types.string import BytesBinaryDumper

from services.conversation.adapters import pg_copy
from services.conversation.adapters.pg_copy import EVENT_TYPES, OUTCOME_TYPES, write_rows


class _Copy:
    """What ``write_rows`` uses of a ``Copy``: the bytes it is given."""

    def __init__(self) -> None:
        self.sent = bytearray()

    def write(self, data: bytes | bytearray) -> None:
        self.sent += data

    def set_types(self, types: Any) -> None:  # only without psycopg's C module
        raise AssertionError("the C formatter is installed: set_types is not called")

    def write_row(self, row: Any) -> None:
        raise AssertionError("the C formatter is installed: write_row is not called")


def _cursor(*, bytes_in_c: bool) -> Any:
    adapters = adapt.AdaptersMap(psycopg.adapters)
    if bytes_in_c:  # as pg_copy._bytes_in_c does for the events' COPY
        adapters.register_dumper(bytes, BytesBinaryDumper)
    return SimpleNamespace(adapters=adapters, connection=None)


def _by_write_row(curs: Any, types: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    """What ``Copy.set_types`` then ``Copy.write_row`` per row send (psycopg's formatter)."""
    transformer = adapt.Transformer(curs)
    formatter = BinaryFormatter(transformer)
    transformer.set_dumper_types([curs.adapters.types.get_oid(t) for t in types],
                                 pq.Format.BINARY)
    sent = bytearray()
    for row in rows:
        sent += formatter.write_row(row)
    sent += formatter.end()
    return bytes(sent)


def _by_write_rows(curs: Any, types: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    copy = _Copy()
    write_rows(copy, curs, types, iter(rows))  # type: ignore[arg-type]
    return bytes(copy.sent)


TEXT = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=40)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                           timezone(-timedelta(hours=11))])
MOMENTS = st.builds(lambda t, tz: t.replace(tzinfo=UTC).astimezone(tz),
                    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
                    OFFSETS)
OUTCOMES = st.lists(st.tuples(TEXT, TEXT, TEXT, TEXT, MOMENTS, st.sampled_from(
    ["accepted", "rejected"]), st.none() | TEXT), max_size=30)
EVENTS = st.lists(st.tuples(st.integers(1, 2**63 - 1), st.binary(min_size=16, max_size=16),
                            st.integers(1, 2**63 - 1), TEXT, st.binary(max_size=300)),
                  max_size=30)


def test_the_c_formatter_is_installed() -> None:
    """The project installs psycopg[binary]: the fast path is the one that runs."""
    assert pg_copy._format_row is not None


@settings(max_examples=200, deadline=None)
@given(OUTCOMES)
def test_outcome_rows_are_the_bytes_write_row_sends(rows: list[tuple[Any, ...]]) -> None:
    curs = _cursor(bytes_in_c=False)
    assert _by_write_rows(curs, OUTCOME_TYPES, rows) == _by_write_row(curs, OUTCOME_TYPES, rows)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_event_rows_are_the_bytes_write_row_sends(rows: list[tuple[Any, ...]]) -> None:
    curs = _cursor(bytes_in_c=True)
    assert _by_write_rows(curs, EVENT_TYPES, rows) == _by_write_row(curs, EVENT_TYPES, rows)


def test_a_real_batch_shape() -> None:
    """An outcome and an event row as a batch writes them, and no rows at all."""
    at = datetime(2026, 11, 30, 20, 0, 0, 123456, tzinfo=UTC)
    outcome = ("ws1", "evt-1", "c-1", "message.received", at, "accepted", None)
    event = (7, uuid.uuid4().bytes, 3, "MessageReceived", b'{"schema_version":2}')
    for curs, types, rows in ((_cursor(bytes_in_c=False), OUTCOME_TYPES, [outcome]),
                              (_cursor(bytes_in_c=True), EVENT_TYPES, [event]),
                              (_cursor(bytes_in_c=True), EVENT_TYPES, [])):
        sent = _by_write_rows(curs, types, rows)
        assert sent == _by_write_row(curs, types, rows)
        assert sent.startswith(pg_copy.SIGNATURE) and sent.endswith(pg_copy.TRAILER)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.uuids(), max_size=20), st.integers(min_value=0, max_value=20))
def test_originator_bytes_are_each_uuids_bytes(ids: list[uuid.UUID], text_at: int) -> None:
    """The 16 bytes of each originator id, in order: by C calls when every id is a
    ``UUID``; the same bytes when some are given as text (the long way)."""
    assert pg_copy.originator_bytes(ids) == [i.bytes for i in ids]
    mixed: list[uuid.UUID | str] = list(ids)
    if mixed:
        position = text_at % len(mixed)
        mixed[position] = str(ids[position])
    assert pg_copy.originator_bytes(mixed) == [i.bytes for i in ids]
