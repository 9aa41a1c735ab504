"""Production event store: eventsourcing's PostgreSQL process recorder plus our outcome log.

Mirrors :mod:`.store_sqlite`: events, outcomes, dead letters and (optionally) a
tracked position are written in one PostgreSQL transaction, writers serialised
(``pg_sql.LOCK_WRITERS``: an advisory lock, where eventsourcing locks the table
``EXCLUSIVE`` and with it autovacuum out), so notification ids are committed in
order. A small batch is one call of a PL/pgSQL function
(``pg_sql.COMMIT_FUNCTION``: one statement, one round trip); a large one is a
pipeline of checks then binary ``COPY`` (:mod:`.pg_copy`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row

from schemas.events import DomainEvent
from schemas.stored import decode_stored
from services.conversation.adapters.pg_recorder import (
    EVENTS_TABLE,
    TRACKING_TABLE,
    PostgresContactRecorder,
    event_columns,
)
from services.conversation.adapters.pg_sql import (
    SQL_LOAD_MANY,
    SQL_PARTITION,
    SQL_READ,
    SQL_SEEN,
    SQL_SEEN_JSON,
)
from services.conversation.application.ports import (
    ConcurrencyConflict,
    DeadLetter,
    Outcome,
    PartitionedEventReader,
    Position,
    Positions,
    RawEventReader,
    ReadsBatchAtOnce,
    RecordsManyPositions,
)
from services.runtime.pg import connection_params, pg_json, pg_text, sql, transient_retry

__all__ = ["EVENTS_TABLE", "TRACKING_TABLE", "PostgresContactRecorder", "PostgresEventStore"]


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
        else:  # the tables exist: add what an older version's schema lacks
            self.recorder.create_commit_function()
            self.recorder.set_table_settings()
        schema = datastore.schema
        self._seen = sql(SQL_SEEN, schema)
        self._seen_json = sql(SQL_SEEN_JSON, schema)
        self._load_many = sql(SQL_LOAD_MANY, schema, table=EVENTS_TABLE)
        self._read = sql(SQL_READ, schema, table=EVENTS_TABLE)
        self._partition = sql(SQL_PARTITION, schema, table=EVENTS_TABLE)

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        return [decode_stored(s.state) for s in self.recorder.select_events(originator_id)]

    @transient_retry
    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        """Events of several aggregates in one query (absent ones map to nothing)."""
        if not originator_ids:
            return {}
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._load_many, (list(set(originator_ids)),), prepare=True)
            return _by_originator(curs)

    @transient_retry
    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        items = list(keys)
        pairs = pg_json(items)  # the keys as one JSON text, where psycopg dumps each (~1 µs)
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            if pairs is None:  # a lone surrogate or a NUL: the arrays, as before
                curs.execute(self._seen, ([k[0] for k in items],
                                          [pg_text(k[1]) for k in items]), prepare=True)
            else:
                curs.execute(self._seen_json, (pairs,), prepare=True)
            found = {(row[0], row[1]) for row in curs}
        if any("\x00" in k[1] for k in items):  # map sanitised ids back to what was asked
            asked = {(k[0], pg_text(k[1])): k for k in items}
            return {asked[key] for key in found if key in asked}
        return found

    @transient_retry
    def seen_and_load(self, keys: Collection[tuple[str, str]],
                      originator_ids: Collection[uuid.UUID]
                      ) -> tuple[set[tuple[str, str]], dict[uuid.UUID, list[DomainEvent]]]:
        """:meth:`seen` and :meth:`load_many` in one round trip (a psycopg pipeline).

        Keys that JSON cannot carry (NUL, lone surrogates) take the two calls.
        """
        pairs = pg_json(list(keys))
        if pairs is None:
            return self.seen(keys), self.load_many(originator_ids)
        with self.datastore.get_connection() as conn:
            with conn.pipeline():
                found_keys = conn.cursor(row_factory=tuple_row)
                found_keys.execute(self._seen_json, (pairs,), prepare=True)
                events = conn.cursor(row_factory=tuple_row)
                events.execute(self._load_many, (list(set(originator_ids)),), prepare=True)
            seen = {(row[0], row[1]) for row in found_keys.fetchall()}
            return seen, _by_originator(events.fetchall())

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None,
               read: Mapping[uuid.UUID, int] | None = None, *,
               originators: Sequence[uuid.UUID] | None = None) -> list[int]:
        """One transaction: position, outcomes, dead letters, then the events.

        What eventsourcing's ``insert_events`` does (single-row tracking that only
        moves forward, the writers' lock so notification ids commit in order,
        ``NOTIFY``), without building a ``StoredEvent`` per event: the four event
        columns go straight into arrays (the ``StoredEvent`` objects alone cost
        more than encoding the events). A position with ``after`` must find the
        recorded position exactly there (-1: none yet), or nothing is written
        (:class:`ConcurrencyConflict`): the Kafka runtime states where each
        partition's batch continues from, so a batch decided on top of a
        transaction storage no longer has is refused.
        """
        columns = event_columns(events, originators)
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


def _by_originator(rows: Iterable[tuple[Any, ...]]) -> dict[uuid.UUID, list[DomainEvent]]:
    """``(originator_id, state)`` rows, in version order, as each aggregate's events."""
    found: dict[uuid.UUID, list[DomainEvent]] = {}
    for originator_id, state in rows:
        found.setdefault(originator_id, []).append(decode_stored(bytes(state)))
    return found


if TYPE_CHECKING:  # mypy checks the declared capabilities
    _MANY: type[RecordsManyPositions] = PostgresEventStore
    _RAW: type[RawEventReader] = PostgresEventStore
    _PARTS: type[PartitionedEventReader] = PostgresEventStore
    _AT_ONCE: type[ReadsBatchAtOnce] = PostgresEventStore
