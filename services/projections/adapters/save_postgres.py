"""The projections' write of one page on PostgreSQL: rows, metric marks, position.

:class:`SnapshotWriter` is the half of
:class:`~.store_postgres.PostgresReadModelStore` that writes a page's rows
(``save_snapshot``) in one transaction: a small page in one call of a PL/pgSQL
function (:mod:`.page_function`), a larger one, or one whose values JSON cannot
carry, in two round trips (psycopg pipelines). At low load the projections write
20-25 small pages a second, and psycopg's work per statement cost more than the
rows (docs/runtime.md, "Per-cycle work", "The projections' page in one call").
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg
from eventsourcing.persistence import DataError, IntegrityError
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.errors import UniqueViolation
from psycopg.rows import tuple_row
from psycopg.sql import Composed

from services.conversation.application.ports import Position
from services.projections.adapters.cells import page_units
from services.projections.adapters.cells_postgres import PostgresCells
from services.projections.adapters.notify import PROJECTED_CHANNEL, notify_payload
from services.projections.adapters.page_function import ONE_CALL_ROWS, SAVE_PAGE_FUNCTION_NAME
from services.projections.adapters.rows_postgres import (
    COPY_TYPES,
    UNIT_VALUES,
    column_arrays,
    rows_json,
)
from services.projections.adapters.store_sqlite import check_after, row_from

#: a page's new rows go in with a binary ``COPY`` from this many on (``_copy_new``)
COPY_ROWS = 200


class SnapshotWriter:
    """Writes a page's row values and the projection's position in one transaction."""

    datastore: PostgresDatastore
    tracking: PostgresTrackingRecorder
    cells: PostgresCells
    _upsert: Composed
    _upsert_json: Composed
    _insert_json: Composed
    _stored_moments: Composed
    _copy: Composed
    _locked_position: Composed
    _save_page_call: Composed
    _create_page_function: Composed

    def create_page_function(self, *, replace: bool = False) -> None:
        """Create the page function (``page_function``): with the tables, or where an
        older version's schema lacks it (callers hold the schema's start-up lock)."""
        quoted = self.datastore.schema.replace('"', '""')
        with self.datastore.transaction(commit=True) as curs:
            if not replace:
                curs.execute("SELECT to_regproc(%s) IS NOT NULL AS present",
                             (f'"{quoted}".{SAVE_PAGE_FUNCTION_NAME}',))
                row = curs.fetchone()
                if row and row["present"]:
                    return
            curs.execute(self._create_page_function, prepare=False)

    def save_snapshot(self, values: list[tuple[Any, ...]], position: Position, *,
                      new: Collection[str] = ()) -> None:
        """Upsert a :meth:`snapshot` and record ``position``, in one transaction.

        Two round trips (psycopg pipelines), not one per statement: first the
        checks and reads (``BEGIN``, the compare-and-set read of the position,
        the position's forward-only upsert, which of the rows are stored and their
        metric units), then, if they pass, the writes and ``COMMIT``
        (docs/runtime.md, "Per-cycle work"). The new rows are inserted, not upserted
        (docs/runtime.md, "PostgreSQL's WAL records per event");
        the position's upsert has locked its row by then, so no other writer of
        the projection inserts meanwhile. Should a row have appeared all the same
        (a writer under another position name), the key's violation rolls the page
        back and it is written again with the upsert. A position that does not
        move forward, or is not at ``position.after``, raises ``IntegrityError``
        before anything else is written.

        The rows in ``new`` (started by this page's openings) are not looked up: they
        are inserted, and have no stored metric units (under a backlog three quarters
        of a page's rows; docs/runtime.md, "The followers again"). One stored after
        all violates the key the same way, and the page is written again, every row
        looked up and upserted.
        """
        upsert, copy = False, True
        if len(values) < ONE_CALL_ROWS and self.datastore.single_row_tracking:
            try:
                if self._save_page(values, position, new):
                    return
            except IntegrityError as exc:  # the datastore's, from psycopg's
                if not isinstance(exc.__cause__, UniqueViolation):
                    raise  # the position: nothing was written
                upsert = True  # a row stored meanwhile: every row upserted, as below
            except (DataError, psycopg.DataError):
                pass  # the statements' way writes it, or raises what it cannot write
        while True:
            try:
                self._save(values, position, upsert=upsert, new=() if upsert else new,
                           copy=copy and not upsert)
                return
            except IntegrityError as exc:  # the datastore's, from psycopg's
                if upsert or not isinstance(exc.__cause__, UniqueViolation):
                    raise
                upsert = True
            except (DataError, psycopg.DataError, UnicodeError):
                if not copy:  # what COPY cannot take (a NUL in a text, a lone surrogate)
                    raise  # goes the statements' ways, as before
                copy = False

    def _save_page(self, values: list[tuple[Any, ...]], position: Position,
                   new: Collection[str]) -> bool:
        """The page in one call of the page function (one transaction); False, with
        nothing written, when JSON cannot carry its values as they are."""
        data = rows_json(values) if values else None
        if values and data is None:
            return False
        started = [v[0] for v in values if v[0] in new] if new else []
        payload = notify_payload([v[1] for v in values]) if values else ""
        with self.datastore.get_connection() as conn:
            conn.execute(self._save_page_call, (
                position.name, position.after, position.offset, data, started,
                PROJECTED_CHANNEL, payload), prepare=True)
        return True

    def _save(self, values: list[tuple[Any, ...]], position: Position, *,
              upsert: bool, new: Collection[str] = (), copy: bool = False) -> None:
        tracking = self.tracking
        with self.datastore.get_connection() as conn:
            if not tracking.has_checked_for_multi_row_tracking_table:
                with conn.cursor() as curs:
                    tracking._check_has_multi_row_tracking_table(curs)
            try:
                with conn.pipeline():
                    conn.execute(b"BEGIN")
                    locked = conn.cursor(row_factory=tuple_row)
                    if position.after is not None:  # compare-and-set (Position.after)
                        locked.execute(self._locked_position, (position.name,), prepare=True)
                    track = conn.cursor(row_factory=tuple_row)
                    track.execute(tracking.insert_tracking_statement, {
                        "application_name": position.name,
                        "notification_id": position.offset}, prepare=True)
                    moments = conn.cursor(row_factory=tuple_row)
                    probed = [v[0] for v in values] if not new \
                        else [v[0] for v in values if v[0] not in new]
                    if probed:
                        moments.execute(self._stored_moments, (probed,), prepare=True)
                self._check_position(position, locked, track)
                if values:
                    stored = moments.fetchall() if probed else []
                    before = page_units(found[1:] for found in stored)
                    known = None if upsert else {found[0] for found in stored}
                    copied = copy and known is not None and self._copy_new(conn, values, known)
                    with conn.pipeline(), conn.cursor() as curs:
                        self._write_rows(curs, values, before, known, copied=copied)
                        conn.execute(b"COMMIT")
                else:
                    conn.execute(b"COMMIT")
            except BaseException:
                conn.rollback()
                raise

    def _copy_new(self, conn: Any, values: list[tuple[Any, ...]], stored: set[str]) -> bool:
        """Insert the rows not in ``stored`` with a binary ``COPY`` when they are at least
        :data:`COPY_ROWS` (a page of a backlog); whether it did.

        The same rows as the JSON insert, without parsing JSON and casting each value on
        the server (~2.5 µs of PostgreSQL's CPU per row, ~0.3 more in Python), for one
        round trip more (outside the pipelines: COPY cannot be in one), which a small
        page at low load does not pay. A key violation is the insert's; a NUL in a text
        or a lone surrogate fails the COPY, and the page is written again without it."""
        new = [v for v in values if v[0] not in stored]
        if len(new) < COPY_ROWS:
            return False
        with conn.cursor() as curs, curs.copy(self._copy) as copy:
            copy.set_types(COPY_TYPES)
            write = copy.write_row
            for row in new:
                write(row)
        return True

    def _check_position(self, position: Position, locked: Any, track: Any) -> None:
        """Raise ``IntegrityError`` if the position was not where it had to be."""
        if position.after is not None:
            found = locked.fetchone()
            check_after(position, int(found[0]) if found else 0)
        if self.datastore.single_row_tracking and track.fetchone() is None:
            raise IntegrityError(f"Failed to record tracking for {position.name} "
                                 f"{position.offset}")

    def _write_rows(self, curs: Any, values: list[tuple[Any, ...]], before: set[Any],
                    stored: set[str] | None, *, copied: bool = False) -> None:
        """Queue the rows' writes, their metric units' marks and the ``NOTIFY``: the
        rows not in ``stored`` inserted (unless ``copied`` already), the others upserted
        (None: every row upserted)."""
        if stored is None or not self._insert_and_upsert(curs, values, stored, copied):
            if (data := rows_json(values)) is not None:
                curs.execute(self._upsert_json, (data,), prepare=True)
            else:
                curs.execute(self._upsert, column_arrays([row_from(v) for v in values]),
                             prepare=True)
        # the next metrics query recomputes the units the rows were and are in
        self.cells.mark(curs, before | page_units(map(UNIT_VALUES, values)))
        curs.execute("SELECT pg_notify(%s, %s)",
                     (PROJECTED_CHANNEL, notify_payload([v[1] for v in values])))

    def _insert_and_upsert(self, curs: Any, values: list[tuple[Any, ...]],
                           stored: set[str], copied: bool) -> bool:
        """Queue the insert of the new rows (unless ``copied``) and the upsert of the
        stored ones; False (nothing queued) when JSON cannot carry them (the ``unnest``
        upsert of them all then)."""
        new = [] if copied else [v for v in values if v[0] not in stored]
        old = [v for v in values if v[0] in stored] if stored else []
        new_data = rows_json(new) if new else ""
        old_data = rows_json(old) if old else ""
        if new_data is None or old_data is None:
            return False
        if new_data:
            curs.execute(self._insert_json, (new_data,), prepare=True)
        if old_data:
            curs.execute(self._upsert_json, (old_data,), prepare=True)
        return True
