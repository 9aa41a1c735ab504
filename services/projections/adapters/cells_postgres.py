"""Metric cells in PostgreSQL: kept with the rows, read by metrics queries.

:class:`PostgresCells` is used by :class:`~.store_postgres.PostgresReadModelStore`:

- every upsert of conversation rows recomputes, in its transaction, the cells of
  the units the rows touched before and after (:meth:`PostgresCells.recompute`);
- ``COPY`` (replay workers, benchmarks) marks the cells stale; the next query or
  :meth:`PostgresCells.rebuild` (called by ``bonychat replay``) rebuilds them all;
- :meth:`PostgresCells.metrics` answers a query from the cells
  (:mod:`.cell_metrics`), filling business durations for the schedule in force
  first when the cells hold another schedule's (:meth:`PostgresCells.fill_business`).

Writers of cells serialise on one transaction-scoped advisory lock per schema, taken
before any row is written, so two recomputations never race.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any, Final

from psycopg import Cursor
from psycopg.rows import TupleRow, tuple_row

from services.projections.adapters.cells import (
    AGGREGATE,
    DELETE_UNITS,
    INSERT_UNITS,
    KINDS,
    LEVEL_US,
    REBUILD,
    REBUILD_PART,
    Unit,
    unit_arrays,
    units_of,
)
from services.projections.domain.cell_metrics import Combiner, Plan, plan
from services.projections.domain.local_days import NotExact
from services.projections.domain.metrics import TIME_GROUPINGS, MetricsQuery
from services.projections.domain.service_levels import Schedule
from services.runtime.pg import pg_json, sql

_OLD_MOMENTS: Final = ("SELECT workspace_id, opened_us, first_message_us, first_response_us, "
                       "closed_us FROM {schema}.conversations WHERE conversation_id = ANY(%s)")
_RANGE: Final = ("FROM {schema}.metric_cells WHERE workspace_id = %(ws)s "
                 "AND dim = ANY(%(dims)s::int[]) AND slot >= %(low)s AND slot < %(high)s")
_SUMS: Final = (
    "sum(n)::int, sum(rc)::int, string_agg(vals, ''::bytea), "
    "CASE WHEN bool_and(bkey IS NOT DISTINCT FROM %(bkey)s::text) THEN %(bkey)s::text END, "
    "string_agg(coalesce(bvals, ''::bytea), ''::bytea)")
#: time groupings: the quarter-hour cells summed per local day (width_bucket index)
_TIME_CELLS: Final = (
    f"SELECT 0, width_bucket(slot, %(edges)s::bigint[]), kind, '', {_SUMS} "
    "FROM {schema}.metric_cells WHERE workspace_id = %(ws)s AND dim = 0 "
    "AND slot >= %(low)s AND slot < %(high)s GROUP BY 2, kind")
#: dimension groupings: the hour cells summed per dimension key
_DIM_CELLS: Final = (
    f"SELECT dim, 0, kind, key, {_SUMS} FROM {{schema}}.metric_cells "
    "WHERE workspace_id = %(ws)s AND (dim = %(dim)s OR dim = 1 AND kind = ANY(%(kinds)s)) "
    "AND slot >= %(low)s AND slot < %(high)s GROUP BY dim, kind, key")
_STALE_CELLS: Final = ("SELECT dim, slot, kind " + _RANGE
                       + " AND kind <> 1 AND bkey IS DISTINCT FROM %(bkey)s::text")
_SLOT_RANGE: Final = ("SELECT min(slot), max(slot) FROM {schema}.metric_cells "
                      "WHERE workspace_id = %s AND dim = %s")
_STALE_ROWS: Final = {
    kind: ("SELECT conversation_id, opened_us, closed_us, first_message_us, first_response_us "
           "FROM {schema}.conversations WHERE workspace_id = %s AND " + moment + " >= %s AND "
           + moment + " < %s AND bkey IS DISTINCT FROM %s")
    for kind, moment in ((2, "first_response_us"), (3, "closed_us"))}
#: business durations of rows whose moments are still those they were computed from
_SET_BUSINESS: Final = (
    "UPDATE {schema}.conversations c SET bkey = %s, response_bus_us = b.r, "
    "resolution_bus_us = b.s FROM unnest(%s::text[], %s::bigint[], %s::bigint[], "
    "%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) AS b(id, r, s, o, f, p, x) "
    "WHERE c.conversation_id = b.id AND c.opened_us = b.o "
    "AND c.first_message_us IS NOT DISTINCT FROM b.f "
    "AND c.first_response_us IS NOT DISTINCT FROM b.p AND c.closed_us IS NOT DISTINCT FROM b.x")
_MARK: Final = (
    "INSERT INTO {schema}.metric_cells_dirty (workspace_id, lvl, kind, slot) "
    "SELECT * FROM unnest(%(w)s::text[], %(lvl)s::int[], %(kind)s::int[], %(low)s::bigint[]) "
    "ON CONFLICT DO NOTHING")
#: the same marks, the units as one JSON array of ``[workspace, level, kind, slot]``
_MARK_JSON: Final = (
    "INSERT INTO {schema}.metric_cells_dirty (workspace_id, lvl, kind, slot) "
    "SELECT u->>0, (u->>1)::smallint, (u->>2)::smallint, (u->>3)::bigint "
    "FROM jsonb_array_elements(%s::jsonb) AS u ON CONFLICT DO NOTHING")
_ANY_DIRTY: Final = "SELECT 1 FROM {schema}.metric_cells_dirty WHERE workspace_id = %s LIMIT 1"
_TAKE_DIRTY: Final = ("DELETE FROM {schema}.metric_cells_dirty WHERE workspace_id = %s "
                      "RETURNING workspace_id, lvl, kind, slot")
_TAKE_ALL_DIRTY: Final = ("DELETE FROM {schema}.metric_cells_dirty "
                          "RETURNING workspace_id, lvl, kind, slot")
Moments = tuple[int, int | None, int | None, int | None]
_US_MIN: Final = -(2**63)
_US_MAX: Final = 2**63 - 1


class PostgresCells:
    """The metric cells of one schema (statements composed once)."""

    def __init__(self, schema: str) -> None:
        self.lock_key = zlib.crc32(f"bonychat-cells:{schema}".encode())
        self.old_moments = sql(_OLD_MOMENTS, schema)
        self.delete = sql(DELETE_UNITS, schema)
        self.insert = sql(INSERT_UNITS, schema)
        self.aggregate = sql(AGGREGATE, schema)
        self.rebuild_all = sql(REBUILD, schema)
        self.rebuild_some = sql(REBUILD_PART, schema)
        self.time_cells = sql(_TIME_CELLS, schema)
        self.dim_cells = sql(_DIM_CELLS, schema)
        self.stale_cells = sql(_STALE_CELLS, schema)
        self.slot_range = sql(_SLOT_RANGE, schema)
        self.stale_rows = {kind: sql(text, schema) for kind, text in _STALE_ROWS.items()}
        self.set_business = sql(_SET_BUSINESS, schema)
        self.truncate = sql("TRUNCATE {schema}.metric_cells, {schema}.metric_cells_dirty",
                            schema)
        self.mark_dirty = sql(_MARK, schema)
        self.mark_dirty_json = sql(_MARK_JSON, schema)
        self.any_dirty = sql(_ANY_DIRTY, schema)
        self.take_dirty = sql(_TAKE_DIRTY, schema)
        self.take_all_dirty = sql(_TAKE_ALL_DIRTY, schema)
        self.state = sql("SELECT ready FROM {schema}.metric_cells_state_2", schema)
        self.set_state = sql(
            "INSERT INTO {schema}.metric_cells_state_2 (ready) VALUES (%s) "
            "ON CONFLICT (id) DO UPDATE SET ready = EXCLUDED.ready", schema)
        self.first_state = sql(
            "INSERT INTO {schema}.metric_cells_state_2 (ready) VALUES (false) "
            "ON CONFLICT (id) DO NOTHING RETURNING ready", schema)

    def lock(self, curs: Cursor[Any]) -> None:
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))

    def units_before(self, curs: Cursor[Any], ids: list[str]) -> list[Unit]:
        """The units of the stored versions of these conversations."""
        units: list[Unit] = []
        with curs.connection.cursor(row_factory=tuple_row) as tuples:
            tuples.execute(self.old_moments, (ids,), prepare=True)
            for found in tuples.fetchall():
                units.extend(units_of(*found))
        return units

    def mark(self, curs: Cursor[Any], units: Iterable[Unit]) -> None:
        """Mark ``units`` for recomputation (a writer of rows: cheap, no lock).

        Sorted (locks in one order), sent as one JSON array (``orjson`` in C; psycopg's
        array dumpers walk every value in Python); as arrays when JSON cannot carry a
        workspace id as it is (a NUL, a lone surrogate)."""
        ordered = sorted(set(units))
        if not ordered:
            return
        data = pg_json(ordered)
        if data is not None:
            curs.execute(self.mark_dirty_json, (data,), prepare=True)
        else:
            curs.execute(self.mark_dirty, unit_arrays(ordered), prepare=True)

    def refresh(self, curs: Cursor[Any], workspace: str | None = None) -> None:
        """Recompute the marked units (of ``workspace``, or all), locked."""
        if workspace is not None:
            curs.execute(self.any_dirty, (workspace,), prepare=True)
            if curs.fetchone() is None:
                return
        self.lock(curs)
        with curs.connection.cursor(row_factory=tuple_row) as tuples:
            if workspace is None:
                tuples.execute(self.take_all_dirty)
            else:
                tuples.execute(self.take_dirty, (workspace,))
            units = [(str(w), int(lvl), int(kind), int(slot))
                     for w, lvl, kind, slot in tuples.fetchall()]
        self.recompute(curs, units)

    def recompute(self, curs: Cursor[Any], units: Iterable[Unit]) -> None:
        """Recompute the cells of ``units`` from the rows (the caller holds the lock)."""
        arrays = unit_arrays(units)
        if arrays["w"]:
            curs.execute(self.delete, arrays)
            curs.execute(self.insert, arrays)

    def rebuild(self, curs: Cursor[Any]) -> None:
        """Every cell from the rows; the cells are then ready."""
        self.lock(curs)
        _for_rebuild(curs)
        curs.execute(self.truncate)
        curs.execute(self.rebuild_all)
        curs.execute(self.set_state, (True,))

    def empty(self, curs: Cursor[Any]) -> None:
        """No cells, marked not ready: before :meth:`rebuild_part` on several connections."""
        self.lock(curs)
        curs.execute(self.truncate)
        curs.execute(self.set_state, (False,))

    def rebuild_part(self, curs: Cursor[Any], part: int, parts: int) -> None:
        """The cells of part ``part`` of ``parts`` (after :meth:`empty`; each part in a
        transaction of its own, at once). The parts share the lock, which keeps every
        other writer of cells out; once all are committed, mark the cells ready."""
        curs.execute("SELECT pg_advisory_xact_lock_shared(%s)", (self.lock_key,))
        _for_rebuild(curs)
        curs.execute(self.rebuild_some, {"part": part, "parts": parts})

    def ready(self, curs: Cursor[TupleRow]) -> bool:
        curs.execute(self.state)
        found = curs.fetchone()
        return bool(found and found[0])

    def metrics(self, curs: Cursor[TupleRow], query: MetricsQuery,
                schedule: Schedule | None) -> dict[str, Any]:
        """The metrics from the cells; :class:`NotExact` when they cannot be exact."""
        workspace = query.workspace_id  # (the caller recomputed its marked units)
        data = None
        if query.date_from is None or query.date_to is None:
            dim = 0 if query.group_by in TIME_GROUPINGS else 1
            curs.execute(self.slot_range, (workspace, dim))
            found = curs.fetchone()
            if found is not None and found[0] is not None:
                data = (int(found[0]), int(found[1]) + LEVEL_US[dim and 1] - 1)
        the_plan = plan(query, data)
        key = None if schedule is None else schedule.key
        if schedule is not None:
            self.fill_business(curs, workspace, schedule, the_plan)
        combiner = Combiner(query, the_plan, key)
        if the_plan.low is not None and the_plan.high is not None \
                and the_plan.low >= the_plan.high:
            pass  # no whole day: only pieces
        elif the_plan.level == 0:
            if the_plan.edges:
                curs.execute(self.time_cells, {
                    "ws": workspace, "edges": list(the_plan.edges), "low": the_plan.low,
                    "high": the_plan.high, "bkey": key}, prepare=True, binary=True)
                combiner.add(curs.fetchall())
        else:
            curs.execute(self.dim_cells, {**self._range(workspace, the_plan, key),
                                          "dim": the_plan.dims[0],
                                          "kinds": list(the_plan.total_kinds)},
                         prepare=True, binary=True)
            combiner.add(curs.fetchall())
        for piece_low, piece_high in the_plan.pieces:
            curs.execute(self.aggregate, self._piece(workspace, the_plan, piece_low, piece_high),
                         binary=True)
            combiner.add([row[1:] for row in curs.fetchall()])
        if combiner.stale:
            raise NotExact("business durations were changed meanwhile")
        return combiner.metrics()

    @staticmethod
    def _range(workspace: str, the_plan: Plan, key: str | None) -> dict[str, Any]:
        return {"ws": workspace, "dims": list(the_plan.dims), "bkey": key,
                "low": _US_MIN if the_plan.low is None else the_plan.low,
                "high": _US_MAX if the_plan.high is None else the_plan.high}

    @staticmethod
    def _piece(workspace: str, the_plan: Plan, low: int, high: int) -> dict[str, Any]:
        return {"w": [workspace] * 3, "lvl": [1] * 3, "kind": list(KINDS),
                "low": [low] * 3, "high": [high] * 3, "dims": list(the_plan.dims)}
        # (a piece's channel rows beyond total_kinds are counted twice nowhere: the
        # combiner takes the total from channel rows only for total_kinds)

    def fill_business(self, curs: Cursor[TupleRow], workspace: str, schedule: Schedule,
                      the_plan: Plan) -> None:
        """Business durations of ``schedule`` for the rows behind the plan's cells and
        pieces that lack them, then those cells again (locked, in the transaction)."""
        def stale() -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
            curs.execute(self.stale_cells, {**self._range(workspace, the_plan, schedule.key),
                                            "dims": list(the_plan.dims)})
            cells = [(int(dim), int(slot), int(kind)) for dim, slot, kind in curs.fetchall()]
            intervals = [(kind, slot, slot + LEVEL_US[dim and 1]) for dim, slot, kind in cells]
            intervals += [(kind, low, high) for low, high in the_plan.pieces for kind in (2, 3)]
            return cells, intervals

        cells, intervals = stale()
        if not cells and not self._stale_rows(curs, workspace, schedule, intervals):
            return
        self.lock(curs)
        cells, intervals = stale()  # again, now that no writer can change them
        rows = self._stale_rows(curs, workspace, schedule, intervals)
        if rows:
            stored = [v[2] for v in rows.values()]
            curs.execute(self.set_business, (
                schedule.key, list(rows), [v[0] for v in rows.values()],
                [v[1] for v in rows.values()], *(list(column) for column in zip(*stored,
                                                                               strict=True))))
        units = {(workspace, dim and 1, kind, slot) for dim, slot, kind in cells}
        for _, _, (opened, first, responded, closed) in rows.values():  # each changed row
            units.update(units_of(workspace, opened, first, responded, closed))
        self.recompute(curs, units)

    def _stale_rows(self, curs: Cursor[TupleRow], workspace: str, schedule: Schedule,
                    intervals: Sequence[tuple[int, int, int]]
                    ) -> dict[str, tuple[int | None, int | None, Moments]]:
        """conversation id -> (response, resolution) business microseconds and the row's
        moments, for the rows in ``intervals`` (kind, low, high) cached for another
        schedule or none."""
        found: dict[str, tuple[int | None, int | None, Moments]] = {}
        for kind, low, high in sorted(set(intervals)):
            curs.execute(self.stale_rows[kind], (workspace, low, high, schedule.key))
            for cid, opened, closed, first, responded in curs.fetchall():
                response = (schedule.micros(first, responded)
                            if first is not None and responded is not None else None)
                resolution = schedule.micros(opened, closed) if closed is not None else None
                found[cid] = (response, resolution, (opened, first, responded, closed))
        return found


def _for_rebuild(curs: Cursor[Any]) -> None:
    """Sort every row in memory; no JIT (compiling the statement took ~1.5 s of its ~8)."""
    curs.execute("SET LOCAL work_mem = '256MB'")
    curs.execute("SET LOCAL jit = off")
