"""Binary ``COPY`` of a batch's outcomes and events (the large batches' write path).

``INSERT … SELECT FROM unnest(arrays)`` costs psycopg's Python list dumper a few µs
per row on the client and PostgreSQL a row-at-a-time insert on the server; a binary
``COPY`` row is formatted by psycopg's C code (``write_row`` with ``set_types``) and
inserted by the server in multi-row batches. ``COPY`` cannot run in a libpq
pipeline, so each one costs two round trips (and the transaction a separate
``COMMIT``): ``bench/pg_write.py`` finds the two paths about even at 128-256 rows
a batch and ``COPY`` ahead from 1,000, so :class:`~.pg_recorder.PostgresContactRecorder`
copies a table's rows only from ``copy_min_rows`` of them (small batches, at low
load, keep the one-pipeline ``INSERT``).

Events are copied with their notification ids: the ids are reserved beforehand in
one statement (``setval(seq, nextval(seq) + n - 1)``) under the writers' lock
(``pg_sql.LOCK_WRITERS``), so no other writer draws from its sequence meanwhile and the
block is contiguous; the commit order stays the notification id order, as with
the ``INSERT``. A taken ``(originator_id, originator_version)`` or outcome key
aborts the ``COPY`` with a unique violation, which the datastore raises as
``IntegrityError`` (the unit of work's conflict), as it does for the ``INSERT``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

from psycopg import Connection, Copy, Cursor, abc, adapt, pq
from psycopg._cmodule import _psycopg
from psycopg.sql import Composed
from psycopg.types.string import BytesBinaryDumper

from services.conversation.application.ports import Outcome
from services.runtime.pg import sql

OUTCOME_TYPES = ("text", "text", "text", "text", "timestamptz", "text", "text")
#: the originator id is copied as its 16 bytes: a binary ``COPY`` field carries no
#: type, and a ``uuid`` column receives exactly those bytes (``uuid_recv``), so
#: ``bytea``'s format writes it; psycopg's ``uuid`` dumper is Python (``UUID.bytes``)
EVENT_TYPES = ("int8", "bytea", "int8", "text", "bytea")
_COPY_OUTCOMES = (
    "COPY {schema}.processed_events (workspace_id, event_id, contact_id, event_type, "
    "occurred_at, outcome, reason) FROM STDIN (FORMAT BINARY)"
)
_COPY_EVENTS = (
    "COPY {schema}.{table} (notification_id, originator_id, originator_version, topic, state) "
    "FROM STDIN (FORMAT BINARY)"
)
# The last of ``n`` notification ids drawn in one go (under the writers' lock).
_RESERVE = (
    "SELECT setval(s, nextval(s) + %b - 1) FROM CAST(pg_get_serial_sequence(%b, "
    "'notification_id') AS regclass) AS s"
)


class CopyStatements:
    """The ``COPY`` and id-reservation statements of one schema's tables."""

    def __init__(self, schema: str, events_table: str) -> None:
        self.outcomes = sql(_COPY_OUTCOMES, schema)
        self.events = sql(_COPY_EVENTS, schema, table=events_table)
        self.reserve: Composed = sql(_RESERVE, schema)
        quoted = '"' + schema.replace('"', '""') + '"."' + events_table.replace('"', '""') + '"'
        self.events_table = quoted


#: the binary ``COPY`` format's header (signature, flags, no extension) and trailer
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
TRAILER = b"\xff\xff"
#: psycopg's C formatter of one binary row (what ``Copy.write_row`` ends in); None
#: without psycopg's C module (then each row goes through ``write_row``)
_format_row: Callable[[Sequence[Any], abc.Transformer, bytearray], None] | None = getattr(
    _psycopg, "format_row_binary", None)


def write_rows(copy: Copy, curs: Cursor[Any], types: Sequence[str],
               rows: Iterable[Sequence[Any]]) -> None:
    """Every row of a binary ``COPY``: what ``copy.set_types(types)`` and a
    ``copy.write_row`` per row send, formatted by the same C function into one
    buffer and sent with one ``copy.write`` (about 0.15 µs a row less than
    ``write_row``, two Python calls a row; tests/unit/test_pg_copy_rows.py)."""
    if _format_row is None:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
        return
    registry = curs.adapters.types
    transformer = adapt.Transformer(curs)
    transformer.set_dumper_types([registry.get_oid(name) for name in types], pq.Format.BINARY)
    data = bytearray(SIGNATURE)
    format_row = _format_row
    for row in rows:
        format_row(row, transformer, data)
    data += TRAILER
    copy.write(data)


_event_id = itemgetter(1)
_contact_id = itemgetter(2)


def _bytes_in_c(curs: Cursor[Any]) -> None:
    """Have ``bytea`` fields formatted by psycopg's C bytes dumper in this cursor's
    ``COPY`` (``set_types`` finds a dumper by type: for ``bytea`` that is the DB-API
    ``Binary`` dumper, Python code called once a row)."""
    curs.adapters.register_dumper(bytes, BytesBinaryDumper)


def _clean_outcomes(outcomes: Sequence[Outcome]) -> Iterable[Sequence[Any]]:
    """The outcome rows, with NUL (which ``text`` cannot hold) replaced in the two
    ids that may carry one (as ``pg_recorder._text``), looking only when one does."""
    if "\x00" not in "".join(map(_event_id, outcomes)) and \
            "\x00" not in "".join(map(_contact_id, outcomes)):
        return outcomes
    return [o._replace(event_id=o.event_id.replace("\x00", "\ufffd"),
                       contact_id=o.contact_id.replace("\x00", "\ufffd")) for o in outcomes]


def copy_outcomes(conn: Connection[Any], statements: CopyStatements,
                  outcomes: Sequence[Outcome]) -> None:
    """``COPY`` the outcome rows (an :class:`Outcome` is a row in column order)."""
    with conn.cursor() as curs, curs.copy(statements.outcomes) as copy:
        write_rows(copy, curs, OUTCOME_TYPES, _clean_outcomes(outcomes))


_INT = attrgetter("int")
_TO_BYTES = methodcaller("to_bytes", 16, "big")


def originator_bytes(originators: Sequence[uuid.UUID | str]) -> list[bytes]:
    """Each originator id's 16 bytes (``UUID.bytes``), in order.

    ``UUID.bytes`` is ``int.to_bytes(16, "big")`` behind a Python property: the value
    is taken and converted by ``map`` of C functions, no Python call per event. Ids
    given as text (any of them) take the long way, through ``uuid.UUID``."""
    try:
        return list(map(_TO_BYTES, map(_INT, originators)))
    except AttributeError:
        return [o.bytes if type(o) is uuid.UUID else uuid.UUID(o).bytes  # type: ignore[arg-type]
                for o in originators]


def copy_events(conn: Connection[Any], statements: CopyStatements, last_id: int,
                columns: tuple[Sequence[uuid.UUID | str], Sequence[int], Sequence[str],
                               Sequence[bytes]]) -> list[int]:
    """``COPY`` the event columns with the ids ``last_id - n + 1 .. last_id``; the ids."""
    originators, versions, topics, states = columns
    ids = list(range(last_id - len(originators) + 1, last_id + 1))
    keys = originator_bytes(originators)
    with conn.cursor() as curs:
        _bytes_in_c(curs)
        with curs.copy(statements.events) as copy:
            write_rows(copy, curs, EVENT_TYPES,
                       zip(ids, keys, versions, topics, states, strict=True))
    return ids
