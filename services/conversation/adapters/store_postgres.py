"""Production event store: eventsourcing's PostgreSQL process recorder plus our outcome log.

Mirrors :mod:`.store_sqlite`: events, outcomes, dead letters and (optionally) a
tracked position are written by one ``insert_events`` call, i.e. in one
PostgreSQL transaction (eventsourcing pipelines it and serialises writers with
an ``EXCLUSIVE`` table lock, so notification ids are committed in order).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row

from schemas.events import DomainEvent, encode_event
from schemas.stored import decode_stored
from services.conversation.adapters.pg_copy import CopyStatements
from services.conversation.adapters.pg_copy import copy_events as copy_events_rows
from services.conversation.adapters.pg_copy import copy_outcomes as copy_outcomes_rows
from services.conversation.adapters.pg_sql import (
    DEAD_LETTER_TABLE,
    OUTCOME_TABLE,
    SQL_INSERT_DEAD_LETTERS,
    SQL_INSERT_EVENTS,
    SQL_INSERT_OUTCOMES,
    SQL_INSERT_TRACKINGS,
    SQL_LOAD_MANY,
    SQL_MOVED,
    SQL_PARTITION,
    SQL_READ,
    SQL_SEEN,
    SQL_UNEXPECTED,
)
from services.conversation.application.ports import (
    ConcurrencyConflict,
    DeadLetter,
    Outcome,
    PartitionedEventReader,
    Position,
    Positions,
    RawEventReader,
    RecordsManyPositions,
)
from services.conversation.domain.contact import aggregate_id
from services.runtime.pg import connection_params, pg_text, sql, transient_retry

P = ParamSpec("P")
R = TypeVar("R")

EVENTS_TABLE = "stored_events"
#: a batch's outcomes or events are copied (``COPY``) from this many rows (bench/pg_write.py)
COPY_MIN_ROWS = 256
TRACKING_TABLE = "notification_tracking"
def _text(values: list[str]) -> list[str]:
    """``pg_text`` of every value, looking at each one only when some value has a NUL."""
    if "\x00" in "".join(values):
        return [v.replace("\x00", "\ufffd") for v in values]
    return values


EventColumns = tuple[list[uuid.UUID | str], list[int], list[str], list[bytes]]


def _event_columns(events: Sequence[DomainEvent]) -> EventColumns:
    """Originator ids, versions, topics (event types) and states, column by column."""
    return ([aggregate_id(e.workspace_id, e.contact_id) for e in events],
            [e.aggregate_version for e in events],
            [e.event_type for e in events],  # type: ignore[attr-defined]
            [encode_event(e) for e in events])


class PostgresContactRecorder(PostgresProcessRecorder):
    """Process recorder that also writes outcomes and dead letters in its transaction."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE,
                         tracking_table_name=TRACKING_TABLE)
        schema = datastore.schema
        self.sql_create_statements.extend(
            [sql(OUTCOME_TABLE, schema), sql(DEAD_LETTER_TABLE, schema)])
        self.insert_outcomes_statement = sql(SQL_INSERT_OUTCOMES, schema)
        self.insert_dead_letters_statement = sql(SQL_INSERT_DEAD_LETTERS, schema)
        self.insert_event_columns_statement = sql(SQL_INSERT_EVENTS, schema, table=EVENTS_TABLE)
        self.insert_trackings_statement = sql(SQL_INSERT_TRACKINGS, schema, table=TRACKING_TABLE)
        self.moved_statement = sql(SQL_MOVED, schema, table=EVENTS_TABLE)
        self.unexpected_statement = sql(SQL_UNEXPECTED, schema, table=TRACKING_TABLE)
        self.copy_statements = CopyStatements(schema, EVENTS_TABLE)
        #: from how many rows a table's part of a batch is written with ``COPY``
        self.copy_min_rows = COPY_MIN_ROWS

    def _insert_stored_events(self, curs: Cursor[DictRow],
                              stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        self._insert_event_columns(curs, (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events], [e.state for e in stored_events]))

    def _insert_event_columns(self, curs: Cursor[DictRow], columns: EventColumns) -> None:
        self._lock_table(curs)  # as eventsourcing: commit order = notification id order
        self._notify_channel(curs)
        curs.execute(self.insert_event_columns_statement, columns, prepare=True)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_columns(self, columns: EventColumns, *, trackings: Sequence[Tracking],
                       outcomes: Sequence[Outcome], dead_letters: Sequence[DeadLetter],
                       read: Mapping[uuid.UUID, int] | None = None,
                       expected: Mapping[str, int] | None = None) -> list[int]:
        """``insert_events`` for events given as column arrays; returns notification ids.

        One transaction: every tracked position (each must move forward, as
        eventsourcing's single-row tracking requires), outcomes, dead letters,
        then lock, notify and insert the events, and check that the aggregates in
        ``read`` are still at the version read. A taken aggregate version or
        outcome key, a position that does not move forward, one that is not at
        its ``expected`` value (-1: none recorded), or a moved aggregate raises
        ``IntegrityError`` and nothing is kept.

        Small batches go as one pipeline with a single sync (``INSERT … unnest``);
        outcomes or events of at least ``copy_min_rows`` rows are written with a
        binary ``COPY`` (:mod:`.pg_copy`) after that pipeline, in the same
        transaction.
        """
        copy_events = len(columns[0]) >= self.copy_min_rows
        copy_outcomes = len(outcomes) >= self.copy_min_rows
        with self.datastore.get_connection() as conn:
            if not (copy_events or copy_outcomes):
                with conn.pipeline() as pipeline, conn.transaction():
                    checks = self._queue_checks(conn, trackings, expected)
                    with conn.cursor() as curs:
                        self._insert_outcomes(curs, outcomes, dead_letters)
                    inserted = conn.cursor(row_factory=tuple_row)
                    if columns[0]:
                        self._insert_event_columns(inserted, columns)  # type: ignore[arg-type]
                    moved = self._queue_moved(conn, read, locked=bool(columns[0]))
                    pipeline.sync()  # raises here on a taken key
                    self._check(checks, moved, trackings, read, expected)
                    ids = [row[0] for row in inserted.fetchall()] if columns[0] else []
            else:
                ids = self._insert_copied(conn, columns, trackings, outcomes, dead_letters,
                                          read, expected)
        if len(ids) != len(columns[0]):
            raise ProgrammingError(f"got {len(ids)} notification ids for {len(columns[0])} "
                                   "events")
        return ids

    def _insert_copied(  # noqa: PLR0917 (insert_columns' arguments)
            self, conn: psycopg.Connection[Any], columns: EventColumns,
            trackings: Sequence[Tracking], outcomes: Sequence[Outcome],
            dead_letters: Sequence[DeadLetter], read: Mapping[uuid.UUID, int] | None,
            expected: Mapping[str, int] | None) -> list[int]:
        """:meth:`insert_columns` with ``COPY``: one pipeline (begin, checks, small
        inserts, lock, notify, id reservation), then the copies, then commit."""
        count, statements = len(columns[0]), self.copy_statements
        copy_events = count >= self.copy_min_rows
        copy_outcomes = len(outcomes) >= self.copy_min_rows
        try:
            with conn.pipeline():
                conn.execute(b"BEGIN")
                checks = self._queue_checks(conn, trackings, expected)
                with conn.cursor() as curs:
                    self._insert_outcomes(curs, () if copy_outcomes else outcomes,
                                          dead_letters)
                inserted = conn.cursor(row_factory=tuple_row)
                if count:
                    self._lock_table(inserted)  # type: ignore[arg-type]
                    self._notify_channel(inserted)  # type: ignore[arg-type]
                    if copy_events:
                        inserted.execute(statements.reserve,
                                         (count, statements.events_table), prepare=True)
                    else:
                        inserted.execute(self.insert_event_columns_statement, columns,
                                         prepare=True)
                moved = self._queue_moved(conn, read, locked=bool(count))
            self._check(checks, moved, trackings, read, expected)  # nothing copied after a conflict
            if copy_outcomes:
                copy_outcomes_rows(conn, self.copy_statements, outcomes)
            ids: list[int] = []
            if copy_events:
                reserved = inserted.fetchone()
                ids = copy_events_rows(conn, statements, int(reserved[0]) if reserved else 0,
                                       columns)
            elif count:
                ids = [row[0] for row in inserted.fetchall()]
            conn.execute(b"COMMIT")
        except BaseException:
            conn.rollback()
            raise
        return ids

    def _queue_checks(self, conn: psycopg.Connection[Any], trackings: Sequence[Tracking],
                      expected: Mapping[str, int] | None) -> tuple[Cursor[Any], Cursor[Any]]:
        """Queue the expected-position check and the tracking upsert (in a pipeline)."""
        unexpected = conn.cursor(row_factory=tuple_row)
        if expected:
            unexpected.execute(self.unexpected_statement,
                               (list(expected), list(expected.values())), prepare=True)
        track = conn.cursor(row_factory=tuple_row)
        if trackings:
            track.execute(self.insert_trackings_statement, (
                [t.application_name for t in trackings],
                [t.notification_id for t in trackings]), prepare=True)
        return unexpected, track

    def _queue_moved(self, conn: psycopg.Connection[Any], read: Mapping[uuid.UUID, int] | None,
                     *, locked: bool) -> Cursor[Any]:
        """Queue the check of the aggregates only read (after the table lock)."""
        moved = conn.cursor(row_factory=tuple_row)
        if read:
            if not locked:
                self._lock_table(moved)  # type: ignore[arg-type]
            moved.execute(self.moved_statement, (list(read), list(read.values())),
                          prepare=True)
        return moved

    @staticmethod
    def _check(checks: tuple[Cursor[Any], Cursor[Any]], moved: Cursor[Any],
               trackings: Sequence[Tracking], read: Mapping[uuid.UUID, int] | None,
               expected: Mapping[str, int] | None) -> None:
        """Raise ``IntegrityError`` for what the queued checks found (after the sync)."""
        unexpected, track = checks
        if expected and (behind := unexpected.fetchall()):
            raise IntegrityError(f"position {behind[0][0]} is not where this batch "
                                 "continues from (storage lost or moved it)")
        if read and (stale := moved.fetchall()):
            raise IntegrityError(f"aggregate {stale[0][0]} moved after it was read "
                                 "(another writer)")
        forward = len(track.fetchall()) if trackings else 0
        if forward != len(trackings):
            raise IntegrityError(
                "a tracked position did not move forward: "
                + ", ".join(f"{t.application_name}={t.notification_id}" for t in trackings))

    def _insert_outcomes(self, curs: Cursor[DictRow], outcomes: Sequence[Outcome],
                         dead: Sequence[DeadLetter]) -> None:
        if outcomes:
            curs.execute(self.insert_outcomes_statement, (
                [o.workspace_id for o in outcomes], _text([o.event_id for o in outcomes]),
                _text([o.contact_id for o in outcomes]), [o.event_type for o in outcomes],
                [o.occurred_at for o in outcomes], [o.outcome for o in outcomes],
                [o.reason for o in outcomes]), prepare=True)
        if dead:
            curs.execute(self.insert_dead_letters_statement, (
                [d.source for d in dead], [pg_text(d.workspace_id) for d in dead],
                [pg_text(d.event_id) for d in dead], [pg_text(d.reason) for d in dead],
                [pg_text(d.raw) for d in dead]), prepare=True)

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)  # the tracked position
        self._insert_outcomes(curs, kwargs.get("outcomes", ()), kwargs.get("dead_letters", ()))


class PostgresEventStore:
    """:class:`~services.conversation.application.ports.EventStore` on PostgreSQL.

    Capabilities (``ports``): :class:`~.ports.RecordsManyPositions` (``commit``
    also records the ``others`` of a :class:`~.ports.Positions`: one transaction
    for several partitions), :class:`~.ports.RawEventReader`,
    :class:`~.ports.PartitionedEventReader`.
    """

    tracks_many_positions = True

    def __init__(self, datastore: PostgresDatastore, *, create_tables: bool = True) -> None:
        self.datastore = datastore
        self.recorder = PostgresContactRecorder(datastore)
        if create_tables:
            self.recorder.create_table()
        schema = datastore.schema
        self._seen = sql(SQL_SEEN, schema)
        self._load_many = sql(SQL_LOAD_MANY, schema, table=EVENTS_TABLE)
        self._read = sql(SQL_READ, schema, table=EVENTS_TABLE)
        self._partition = sql(SQL_PARTITION, schema, table=EVENTS_TABLE)

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        return [decode_stored(s.state) for s in self.recorder.select_events(originator_id)]

    @transient_retry
    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        """Events of several aggregates in one query (absent ones map to nothing)."""
        found: dict[uuid.UUID, list[DomainEvent]] = {}
        if not originator_ids:
            return found
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._load_many, (list(set(originator_ids)),), prepare=True)
            for originator_id, state in curs:
                found.setdefault(originator_id, []).append(decode_stored(bytes(state)))
        return found

    @transient_retry
    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        items = list(keys)
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._seen, ([k[0] for k in items], [pg_text(k[1]) for k in items]),
                         prepare=True)
            found = {(row[0], row[1]) for row in curs}
        if any("\x00" in k[1] for k in items):  # map sanitised ids back to what was asked
            asked = {(k[0], pg_text(k[1])): k for k in items}
            return {asked[key] for key in found if key in asked}
        return found

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None,
               read: Mapping[uuid.UUID, int] | None = None) -> list[int]:
        """One transaction, one pipeline: position, outcomes, dead letters, then the events.

        What eventsourcing's ``insert_events`` does (single-row tracking that only
        moves forward, ``EXCLUSIVE`` table lock so notification ids commit in order,
        ``NOTIFY``), without building a ``StoredEvent`` per event: the four event
        columns go straight into arrays (the ``StoredEvent`` objects alone cost
        more than encoding the events). A position with ``after`` must find the
        recorded position exactly there (-1: none yet), or nothing is written
        (:class:`ConcurrencyConflict`): the Kafka runtime states where each
        partition's batch continues from, so a batch decided on top of a
        transaction storage no longer has is refused.
        """
        columns = _event_columns(events)
        positions = [] if position is None else (
            list(position.all()) if isinstance(position, Positions) else [position])
        try:
            ids: list[int] = self.recorder.insert_columns(
                columns, trackings=[Tracking(p.name, p.offset) for p in positions],
                outcomes=outcomes, dead_letters=dead_letters, read=read,
                expected={p.name: p.after for p in positions if p.after is not None})
        except IntegrityError as exc:
            raise ConcurrencyConflict(str(exc)) from exc
        return ids

    def position(self, name: str) -> int | None:
        result: int | None = self.recorder.max_tracking_id(name)
        return result

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        return [(nid, decode_stored(state)) for nid, state in self.read_raw(after, limit)]

    @transient_retry
    def read_raw(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """``(notification id, stored JSON)`` after ``after``, in order, not decoded.

        A plain two-column query in binary format: eventsourcing's
        ``select_notifications`` builds a dict and a ``Notification`` per row.
        """
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row, binary=True) as curs):
            curs.execute(self._read, (after, limit), prepare=True)
            return curs.fetchall()

    def stream_partition(self, upto: int, part: int, parts: int, chunk: int = 20_000
                         ) -> Iterator[list[bytes]]:
        """Stored JSON of one partition of the aggregates, ids up to ``upto``, in order.

        For a parallel replay: every event of an aggregate (hence of each of its
        conversations) is in the same partition. Uses a connection of its own
        (not the pool), so it works in a forked process, and a server-side cursor.
        """
        with psycopg.connect(**connection_params(self.datastore)) as conn, conn.cursor(
                name=f"replay_{part}", binary=True, row_factory=tuple_row) as curs:
            curs.itersize = chunk
            curs.execute(self._partition, (upto, parts, part))
            while rows := curs.fetchmany(chunk):
                yield [row[0] for row in rows]

    def max_notification_id(self) -> int:
        return int(self.recorder.max_notification_id() or 0)


if TYPE_CHECKING:  # mypy checks the declared capabilities
    _MANY: type[RecordsManyPositions] = PostgresEventStore
    _RAW: type[RawEventReader] = PostgresEventStore
    _PARTS: type[PartitionedEventReader] = PostgresEventStore
