"""A large batch's transaction in PostgreSQL: the checks and small inserts in one
pipeline, then binary ``COPY`` (:mod:`.pg_copy`), then ``COMMIT``.

:class:`CopyingRecorder` is the part of :class:`.pg_recorder.PostgresContactRecorder`
that writes a batch whose outcomes or events reach ``copy_min_rows`` rows, and the
outcome and dead-letter inserts both paths share; the subclass builds every
statement named here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import Composed

from services.conversation.adapters.pg_copy import CopyStatements
from services.conversation.adapters.pg_copy import copy_events as copy_events_rows
from services.conversation.adapters.pg_copy import copy_outcomes as copy_outcomes_rows
from services.conversation.application.ports import DeadLetter, Outcome
from services.runtime.pg import pg_text

EventColumns = tuple[list[uuid.UUID | str], list[int], list[str], list[bytes]]


def _text(values: list[str]) -> list[str]:
    """``pg_text`` of every value, looking at each one only when some value has a NUL."""
    if "\x00" in "".join(values):
        return [v.replace("\x00", "\ufffd") for v in values]
    return values


class CopyingRecorder(PostgresProcessRecorder):
    """The ``COPY`` path of a batch's transaction (statements built by the subclass)."""

    insert_outcomes_statement: Composed
    insert_dead_letters_statement: Composed
    insert_event_columns_statement: Composed
    insert_trackings_statement: Composed
    moved_statement: Composed
    unexpected_statement: Composed
    copy_statements: CopyStatements
    copy_min_rows: int

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
