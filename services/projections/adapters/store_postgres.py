"""Production read model: conversation rows in PostgreSQL, next to the event store.

Mirrors :mod:`.store_sqlite`. The table, its statements and how rows are encoded
for them (one JSON array of row arrays, or one array per column, ``unnest``, for a
value JSON cannot carry) are in :mod:`.rows_postgres`. The projection's position is
recorded by eventsourcing's tracking recorder (its own ``projection_tracking``
table) on the same cursor, in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed

from services.conversation.application.ports import Position
from services.projections.adapters import deferred_indexes
from services.projections.adapters.cells_parts import (
    copy_part,
    mark_ready,
    rebuild_in_parts,
    write_summed,
)
from services.projections.adapters.cells_postgres import PostgresCells
from services.projections.adapters.page_function import (
    SAVE_PAGE_FUNCTION,
    SAVE_PAGE_FUNCTION_NAME,
    SQL_SAVE_PAGE,
)
from services.projections.adapters.pages_postgres import PostgresPages
from services.projections.adapters.rows_postgres import (
    COPY_TYPES,
    FILLFACTOR,
    ROW_VALUES,
    SCHEMA,
    SQL_COPY,
    SQL_EXPIRED,
    SQL_FACTS,
    SQL_INSERT_JSON,
    SQL_OPEN_WORKSPACES,
    SQL_SELECT,
    SQL_STORED_MOMENTS,
    SQL_UPSERT,
    SQL_UPSERT_JSON,
    column_arrays,
    rows_json,
)
from services.projections.adapters.save_postgres import SnapshotWriter
from services.projections.adapters.store_sqlite import (
    ROW_WINDOW_COLUMN,
    WINDOW,
    row_from,
)
from services.projections.domain.local_days import NotExact
from services.projections.domain.metrics import Fact, FactWindow, MetricsQuery, RowWindow
from services.projections.domain.row_cells import CellRow
from services.projections.domain.rows import ConversationRow
from services.projections.domain.service_levels import Schedule
from services.runtime.pg import (
    NUL_ESCAPE,
    connection_params,
    pg_text,
    sql,
    transient_retry,
)

#: the public names of this module (FILLFACTOR ... rows_json now live in :mod:`.rows_postgres`)
__all__ = ["FILLFACTOR", "NUL_ESCAPE", "SCHEMA", "TRACKING_TABLE", "PostgresReadModelStore",
           "column_arrays", "rows_json"]

log = logging.getLogger(__name__)
TRACKING_TABLE = "projection_tracking"
_ROW_VALUES = ROW_VALUES  # the name the write tests use


class PostgresReadModelStore(SnapshotWriter, PostgresPages):
    """:class:`~services.projections.application.ports.ReadModelStore` on PostgreSQL."""

    def __init__(self, datastore: PostgresDatastore, *, create_tables: bool = True) -> None:
        self.datastore = datastore
        schema = datastore.schema
        self.tracking = PostgresTrackingRecorder(datastore, tracking_table_name=TRACKING_TABLE)
        if create_tables:
            self.tracking.create_table()
        self.cells = PostgresCells(schema)
        if create_tables:
            with datastore.transaction(commit=True) as curs:
                for statement in SCHEMA:
                    curs.execute(sql(statement, schema), prepare=False)
                curs.execute(self.cells.first_state)
                created = curs.fetchone() is not None
            if created:  # an existing database gains the cells: fill them from its rows
                self.rebuild_cells()
        self._create_page_function = sql(SAVE_PAGE_FUNCTION, schema,
                                         function=SAVE_PAGE_FUNCTION_NAME, tracking=TRACKING_TABLE)
        self.create_page_function(replace=create_tables)
        self._save_page_call = sql(SQL_SAVE_PAGE, schema, function=SAVE_PAGE_FUNCTION_NAME)
        self._upsert = sql(SQL_UPSERT, schema)
        self._upsert_json = sql(SQL_UPSERT_JSON, schema)
        self._insert_json = sql(SQL_INSERT_JSON, schema)
        self._stored_moments = sql(SQL_STORED_MOMENTS, schema)
        self._select = sql(SQL_SELECT, schema)
        self._facts = sql(SQL_FACTS, schema)
        self._facts_window = sql(SQL_FACTS + " AND " + WINDOW.format(p="%s"), schema)
        self._expired = sql(SQL_EXPIRED, schema)
        self._open_workspaces = sql(SQL_OPEN_WORKSPACES, schema)
        self._copy = sql(SQL_COPY, schema)
        self._locked_position = sql(
            "SELECT notification_id FROM {schema}.{table} WHERE application_name = %s "
            "FOR UPDATE", schema, table=TRACKING_TABLE)
        self._reset = [
            sql("TRUNCATE {schema}.conversations", schema),
            sql("DELETE FROM {schema}.{table} WHERE application_name LIKE %s",
                schema, table=TRACKING_TABLE),
        ]

    @transient_retry
    def load_rows(self, ids: Collection[str]) -> dict[str, ConversationRow]:
        if not ids:
            return {}
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._select + SQL(" WHERE conversation_id = ANY(%b::text[])"),
                         (list(ids),), prepare=True)
            rows = [row_from(values) for values in curs]
        return {row.conversation_id: row for row in rows}

    def save(self, rows: Sequence[ConversationRow], position: Position) -> None:
        unique = {row.conversation_id: row for row in rows}  # last one wins
        self.save_snapshot(self.snapshot(list(unique.values())), position)

    def snapshot(self, rows: Sequence[ConversationRow]) -> list[tuple[Any, ...]]:
        """What :meth:`save` writes for ``rows`` (one per conversation, as the projection
        gives them): their values in COLUMNS order, copied (the rows may change meanwhile)."""
        return list(map(ROW_VALUES, rows))

    def copy_rows(self, rows: Sequence[ConversationRow]) -> None:
        """Insert rows that are not in the table yet (a replay's), with ``COPY``.

        On a connection of its own, so a forked replay worker can use it. The metric
        cells are then stale: :meth:`rebuild_cells` (or the next metrics query) rebuilds them.
        """
        if not rows:
            return
        try:
            self._copy_values(map(ROW_VALUES, rows))
        except psycopg.DataError:  # a NUL in a text (rare): only then look at each value
            self._copy_values(zip(*column_arrays(rows), strict=True))

    def _copy_values(self, values: Iterable[tuple[Any, ...]]) -> None:
        with psycopg.connect(**connection_params(self.datastore)) as conn, \
                conn.cursor() as curs:
            with curs.copy(self._copy) as copy:
                copy.set_types(COPY_TYPES)
                for row in values:
                    copy.write_row(row)
            curs.execute(self.cells.set_state, (False,))

    def refresh_cells(self) -> None:
        """Recompute every cell whose rows changed since (metrics queries do it per
        workspace)."""
        with self.datastore.transaction(commit=True) as curs:
            self.cells.refresh(curs)

    def rebuild_cells(self, parts: int = 1) -> None:
        """Every metric cell from the rows (after ``copy_rows``; ``bonychat replay``), by
        ``parts`` connections at once (:mod:`.cells_parts`); in one if that fails."""
        if parts > 1:
            try:
                rebuild_in_parts(self.cells, self.datastore, parts)
                return
            except psycopg.Error as exc:
                log.warning("rebuilding the metric cells in %d parts failed (%s); "
                            "rebuilding them in one", parts, exc)
        with self.datastore.transaction(commit=True) as curs:
            self.cells.rebuild(curs)

    def write_cells(self, cells: Iterable[CellRow]) -> None:
        """Every metric cell, summed from the rows copied (``bonychat replay``'s workers)."""
        write_summed(self.cells, self.datastore, cells)

    def copy_cells(self, cells: Iterable[CellRow]) -> int:
        """One disjoint part of the cells, on a connection of its own (a replay worker's);
        the cells stay not ready until :meth:`cells_ready`."""
        return copy_part(self.cells, self.datastore, cells)

    def drop_indexes(self) -> None:
        """Before a replay copies every row: no secondary index (:mod:`.deferred_indexes`)."""
        deferred_indexes.drop(self.datastore)

    def create_indexes(self, parts: int = 1) -> None:
        """Once every row is in: the secondary indexes again, ``parts`` at once."""
        deferred_indexes.create(self.datastore, parts)

    def cells_ready(self) -> None:
        """Every part copied by :meth:`copy_cells` is in: mark the cells ready."""
        mark_ready(self.cells, self.datastore)

    def position(self, name: str) -> int | None:
        result: int | None = self.tracking.max_tracking_id(name)
        return result

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self.cells.lock(curs)
            curs.execute(self._reset[0])
            curs.execute(self._reset[1], ("projection:%",))
            curs.execute(self.cells.truncate)
            curs.execute(self.cells.set_state, (True,))

    @transient_retry
    def conversations(self, workspace_id: str, contact_id: str | None = None,
                      status: str | None = None,
                      between: RowWindow | None = None) -> list[ConversationRow]:
        query: Composed = self._select + SQL(" WHERE workspace_id = %s")
        params: list[Any] = [workspace_id]
        if between is not None:
            column, low, high = between
            name = ROW_WINDOW_COLUMN[column]
            query += SQL(f" AND {name} >= %s AND {name} < %s")
            params += [low, high]
        if contact_id is not None:
            query += SQL(" AND contact_id = %s")
            params.append(pg_text(contact_id))
        if status == "open":
            query += SQL(" AND closed_us IS NULL")
        elif status == "closed":
            query += SQL(" AND closed_us IS NOT NULL")
        query += SQL(" ORDER BY opened_us, contact_id, conversation_id")
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(query, params, prepare=True)
            return [row_from(values) for values in curs]

    def facts(self, workspace_id: str,
              window: FactWindow | None = None) -> Iterator[Fact]:
        return iter(self._fetch_facts(workspace_id, window))

    @transient_retry
    def _fetch_facts(self, workspace_id: str, window: FactWindow | None) -> list[Fact]:
        query, params = self._facts, list[Any]([workspace_id])
        if window is not None:
            query = self._facts_window
            params += [window[0], window[1]] * 3
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(query, params, prepare=True)
            return [Fact(*values) for values in curs]

    @transient_retry
    def aggregate_metrics(self, query: MetricsQuery, window: FactWindow | None = None,
                          schedule: Schedule | None = None) -> dict[str, Any] | None:
        """The metrics from the metric cells (:mod:`.cells_postgres`), or None when only
        the Python reference can be exact (then: :meth:`facts` and ``compute``).

        ``schedule``: the workspace's business hours in force (None: always open)."""
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            with conn.transaction():
                ready = self.cells.ready(curs)
            if not ready:
                self.rebuild_cells()
            with conn.transaction():  # committed on its own: the lock is held only for it
                self.cells.refresh(curs, query.workspace_id)
            try:
                with conn.transaction():
                    curs.execute("SET LOCAL work_mem = '64MB'")  # a year's values in memory
                    return self.cells.metrics(curs, query, schedule)
            except NotExact:
                return None

    @transient_retry
    def expired_contacts(self, workspace_id: str, last_activity_before_us: int) -> list[str]:
        """Contacts with an open conversation whose last activity is at or before the cut."""
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._expired, (workspace_id, last_activity_before_us))
            return [str(v[0]) for v in curs]

    @transient_retry
    def open_workspaces(self) -> list[str]:
        """Workspaces with at least one open conversation."""
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._open_workspaces)
            return [str(v[0]) for v in curs]
