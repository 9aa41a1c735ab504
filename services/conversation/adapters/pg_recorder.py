"""The conversation service's PostgreSQL recorder: one batch's transaction.

eventsourcing's process recorder (tables, single-row tracking, the ``NOTIFY``
of its ``insert_events``; writers serialised by ``pg_sql.LOCK_WRITERS`` instead
of its ``EXCLUSIVE`` table lock, which locked autovacuum out) plus our outcome
log and dead letters, written by :meth:`PostgresContactRecorder.insert_columns` in one
transaction: a small batch as one call of the commit function
(``pg_sql.COMMIT_FUNCTION``), a large one as checks then binary ``COPY``
(:mod:`.pg_copied`, :mod:`.pg_copy`). :mod:`.store_postgres` builds the event store on it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor, errors
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier, Literal

from schemas.events import DomainEvent, encode_events
from services.conversation.adapters.pg_copied import CopyingRecorder, EventColumns, _text
from services.conversation.adapters.pg_copy import CopyStatements
from services.conversation.adapters.pg_sql import (
    COMMIT_FUNCTION,
    COMMIT_FUNCTION_NAME,
    DEAD_LETTER_TABLE,
    INSERT_ONLY_TABLES,
    LOCK_WRITERS,
    OUTCOME_TABLE,
    RELOPTIONS,
    SQL_COMMIT,
    SQL_INSERT_DEAD_LETTERS,
    SQL_INSERT_EVENTS,
    SQL_INSERT_OUTCOMES,
    SQL_INSERT_TRACKINGS,
    SQL_MOVED,
    SQL_UNEXPECTED,
    TABLE_SETTINGS,
    TABLE_SETTINGS_LOCK_TIMEOUT,
)
from services.conversation.application.ports import DeadLetter, Outcome
from services.conversation.domain.contact import aggregate_id
from services.runtime.pg import lock_key, pg_text, sql

log = logging.getLogger(__name__)

EVENTS_TABLE = "stored_events"
TRACKING_TABLE = "notification_tracking"
#: a batch's outcomes or events are copied (``COPY``) from this many rows (bench/pg_write.py)
COPY_MIN_ROWS = 256


def writers_lock_key(schema: str) -> int:
    """The advisory lock key the writers of ``schema``'s events table serialise on."""
    return lock_key(f"bonychat:events-writers:{schema}.{EVENTS_TABLE}")


def event_columns(events: Sequence[DomainEvent],
                  originators: Sequence[uuid.UUID] | None = None) -> EventColumns:
    """Originator ids, versions, topics (event types) and states, column by column.

    ``originators``: the originator id of each event, if the caller has them (the
    unit of work has: each is its aggregate's ``aggregate_id``)."""
    if originators is not None and len(originators) != len(events):
        raise ValueError(f"{len(originators)} originator ids for {len(events)} events")
    return (list(originators) if originators is not None
            else [aggregate_id(e.workspace_id, e.contact_id) for e in events],
            list(map(_VERSION, events)), list(map(_EVENT_TYPE, events)), encode_events(events))


_VERSION = attrgetter("aggregate_version")
_EVENT_TYPE = attrgetter("event_type")


class PostgresContactRecorder(CopyingRecorder):
    """Process recorder that also writes outcomes and dead letters in its transaction."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE,
                         tracking_table_name=TRACKING_TABLE)
        schema = datastore.schema
        #: table -> its storage settings (``pg_sql.TABLE_SETTINGS``)
        self.table_settings_statements = {
            table.format(table=EVENTS_TABLE): sql(statement, schema, table=EVENTS_TABLE)
            for table, statement in zip(INSERT_ONLY_TABLES, TABLE_SETTINGS, strict=True)}
        self.sql_create_statements.extend(
            [sql(OUTCOME_TABLE, schema), sql(DEAD_LETTER_TABLE, schema),
             *self.table_settings_statements.values()])
        self.insert_outcomes_statement = sql(SQL_INSERT_OUTCOMES, schema)
        self.insert_dead_letters_statement = sql(SQL_INSERT_DEAD_LETTERS, schema)
        self.insert_event_columns_statement = sql(SQL_INSERT_EVENTS, schema, table=EVENTS_TABLE)
        self.insert_trackings_statement = sql(SQL_INSERT_TRACKINGS, schema, table=TRACKING_TABLE)
        self.moved_statement = sql(SQL_MOVED, schema, table=EVENTS_TABLE)
        self.unexpected_statement = sql(SQL_UNEXPECTED, schema, table=TRACKING_TABLE)
        #: the writers' transaction advisory lock (``pg_sql.LOCK_WRITERS``)
        self.writers_lock_key = writers_lock_key(schema)
        key = SQL("{}").format(Literal(self.writers_lock_key))
        self.lock_table_statements = [
            self.lock_table_statements[0],  # eventsourcing's SET LOCAL lock_timeout
            *(SQL(s).format(schema=Identifier(schema), table=Identifier(EVENTS_TABLE),
                            lock_key=key) for s in LOCK_WRITERS)]
        self.create_commit_function_statement = SQL(COMMIT_FUNCTION).format(
            schema=Identifier(schema), function=Identifier(COMMIT_FUNCTION_NAME),
            table=Identifier(EVENTS_TABLE), tracking=Identifier(TRACKING_TABLE),
            channel=Identifier(self.channel_name), lock_key=key)
        self.sql_create_statements.append(self.create_commit_function_statement)
        self.commit_statement = sql(SQL_COMMIT, schema, function=COMMIT_FUNCTION_NAME)
        self.commit_function = '"' + schema.replace('"', '""') + f'".{COMMIT_FUNCTION_NAME}'
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
        self._lock_table(curs)  # LOCK_WRITERS: commit order = notification id order
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

        Small batches are one statement, the commit function (``INSERT … unnest``
        inside; the autocommit connection makes it its own transaction: one round
        trip, where a pipeline of the same ten statements cost the client about
        0.6 ms more a batch, bench/pg_write.py). When the outcomes or the events
        of a batch reach ``copy_min_rows`` rows, a pipeline (begin, the checks,
        the small inserts, lock, notify, id reservation) is followed by binary
        ``COPY`` (:mod:`.pg_copy`) and ``COMMIT``.
        """
        copy_events = len(columns[0]) >= self.copy_min_rows
        copy_outcomes = len(outcomes) >= self.copy_min_rows
        with self.datastore.get_connection() as conn:
            if copy_events or copy_outcomes:
                ids = self._insert_copied(conn, columns, trackings, outcomes, dead_letters,
                                          read, expected)
            else:  # one statement, its own transaction: one round trip
                with conn.cursor(row_factory=tuple_row) as curs:
                    curs.execute(self.commit_statement, self._commit_params(
                        columns, trackings, outcomes, dead_letters, read, expected),
                        prepare=True)
                    ids = [row[0] for row in curs.fetchall()]
        if len(ids) != len(columns[0]):
            raise ProgrammingError(f"got {len(ids)} notification ids for {len(columns[0])} "
                                   "events")
        return ids

    @staticmethod
    def _commit_params(  # noqa: PLR0917 (insert_columns' arguments)
            columns: EventColumns, trackings: Sequence[Tracking], outcomes: Sequence[Outcome],
            dead: Sequence[DeadLetter], read: Mapping[uuid.UUID, int] | None,
            expected: Mapping[str, int] | None) -> list[list[Any] | None]:
        """The arguments of the commit function (``pg_sql.COMMIT_FUNCTION``): NULL for
        an empty array."""
        params: list[list[Any] | None] = [None] * 22
        if trackings:
            params[0:2] = [[t.application_name for t in trackings],
                           [t.notification_id for t in trackings]]
        if expected:
            params[2:4] = [list(expected), list(expected.values())]
        if outcomes:
            params[4:11] = [
                [o.workspace_id for o in outcomes], _text([o.event_id for o in outcomes]),
                _text([o.contact_id for o in outcomes]), [o.event_type for o in outcomes],
                [o.occurred_at for o in outcomes], [o.outcome for o in outcomes],
                [o.reason for o in outcomes]]
        if dead:
            params[11:16] = [[d.source for d in dead], [pg_text(d.workspace_id) for d in dead],
                             [pg_text(d.event_id) for d in dead],
                             [pg_text(d.reason) for d in dead], [pg_text(d.raw) for d in dead]]
        if columns[0]:
            params[16:20] = list(columns)
        if read:
            params[20:22] = [list(read), list(read.values())]
        return params

    def create_commit_function(self) -> None:
        """Create the commit function if this schema lacks it (tables of an older version)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT to_regproc(%s) IS NOT NULL AS present", (self.commit_function,))
            row = curs.fetchone()
            if not (row and row["present"]):
                curs.execute(self.create_commit_function_statement)

    def set_table_settings(self) -> list[str]:
        """Give the insert-only tables their settings (``pg_sql.TABLE_SETTINGS``) where
        they lack them (tables of an older version); the tables changed. A role that
        does not own a table leaves it as it is (the settings only tune autovacuum), and
        so does one that cannot lock a table within ``TABLE_SETTINGS_LOCK_TIMEOUT`` (a
        long VACUUM, an anti-wraparound one included, holds the lock ``ALTER TABLE``
        needs; start-up must not wait for it): the next start tries again."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(f"SET LOCAL lock_timeout = '{TABLE_SETTINGS_LOCK_TIMEOUT}'")
            curs.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = ANY(%s) "
                "AND NOT coalesce(c.reloptions, '{}') @> %s::text[]",
                (self.datastore.schema, list(self.table_settings_statements), list(RELOPTIONS)))
            lacking = [str(row["relname"]) for row in curs.fetchall()]
            changed = []
            for table in lacking:
                try:
                    with curs.connection.transaction():  # a savepoint
                        curs.execute(self.table_settings_statements[table])
                    changed.append(table)
                except errors.InsufficientPrivilege:  # not the owner: as it was
                    continue
                except errors.LockNotAvailable:  # busy (a VACUUM): next start
                    log.warning("event store: %s is locked; its autovacuum settings are "
                                "left for the next start", table)
                    continue
        return changed

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)  # the tracked position
        self._insert_outcomes(curs, kwargs.get("outcomes", ()), kwargs.get("dead_letters", ()))
