"""A small page of the projections in one statement: a PL/pgSQL function.

At low load the projections write 20-25 pages a second of ~50 events each. The
statements' way (:class:`~.save_postgres.SnapshotWriter`) sends about ten statements
per page in two pipelined round trips; psycopg's Python per statement, not the rows,
was most of the service's CPU there (docs/runtime.md, "Per cycle at low load; the
projections' page in one call"). :data:`SAVE_PAGE_FUNCTION` does the same work in
the same order in one call, one transaction (the connections are in autocommit):

1. the compare-and-set of the position (``Position.after``): its row locked, and an
   ``integrity_constraint_violation`` with :func:`~.store_sqlite.check_after`'s words
   when it is elsewhere;
2. the position's forward-only upsert (eventsourcing's single-row tracking statement);
   not moving forward raises as eventsourcing's recorder does;
3. which of the page's rows are stored (those not in ``p_new``, the rows this page
   started, are not looked up) and their moments;
4. the rows not stored inserted (a plain insert: one WAL record per row), the stored
   ones upserted (a row stored meanwhile under another position violates the key,
   and the caller writes the page again the statements' way, every row upserted);
5. the metric units of the stored moments and of the new values marked dirty, once
   each, in :func:`~.cells.page_units`' order and arithmetic (floor slots);
6. ``pg_notify`` of the page's workspaces.

Only the shapes JSON carries as they are come here (``rows_json``); the others, and
pages of :data:`ONE_CALL_ROWS` rows or more (a backlog's, where ``COPY`` pays), go
the statements' way.
"""

from __future__ import annotations

from typing import Final

from services.projections.adapters.cells import QUARTER_US, SPAN_US
from services.projections.adapters.rows_postgres import CONFLICT, json_insert, stored_moments_of
from services.projections.adapters.store_sqlite import COLUMNS

#: a new signature or body gets a new name: old and new services may share a schema
SAVE_PAGE_FUNCTION_NAME: Final = "bonychat_save_page_v1"
#: pages with fewer rows go in one call (from the statements' ``COPY`` threshold on, a
#: page is a backlog's and its rows cost more than its statements)
ONE_CALL_ROWS: Final = 200

_ROWS: Final = "jsonb_array_elements(p_rows) AS r"
_INSERT: Final = json_insert("p_rows")


def _floor(value: str, size: int) -> str:
    """``value`` floored to a multiple of ``size`` (Python's ``v - v % size``)."""
    return f"{value} - (({value} % {size}) + {size}) % {size}"


def _index(column: str) -> int:
    return COLUMNS.index(column)


_MOMENTS: Final = (
    "SELECT * FROM unnest(s_ws, s_opened, s_message, s_response, s_closed) "
    "UNION ALL SELECT r->>{ws}, (r->>{opened})::bigint, (r->>{message})::bigint, "
    "(r->>{response})::bigint, (r->>{closed})::bigint FROM {rows}"
).format(ws=_index("workspace_id"), opened=_index("opened_us"),
         message=_index("first_message_us"), response=_index("first_response_us"),
         closed=_index("closed_us"), rows=_ROWS)
_QUARTERS: Final = (
    f"SELECT w, 1 AS kind, {_floor('o', QUARTER_US)} AS s FROM m WHERE o IS NOT NULL "
    f"UNION SELECT w, 2, {_floor('fr', QUARTER_US)} FROM m "
    "WHERE fr IS NOT NULL AND fm IS NOT NULL "
    f"UNION SELECT w, 3, {_floor('cl', QUARTER_US)} FROM m WHERE cl IS NOT NULL"
)
_MARK: Final = (
    f"WITH m(w, o, fm, fr, cl) AS ({_MOMENTS}), q AS ({_QUARTERS}) "
    "INSERT INTO {schema}.metric_cells_dirty (workspace_id, lvl, kind, slot) "
    "SELECT w, lvl, kind, s FROM (SELECT w, 0 AS lvl, kind, s FROM q "
    f"UNION SELECT w, 1, kind, {_floor('s', SPAN_US)} FROM q) AS u "
    'ORDER BY w COLLATE "C", lvl, kind, s ON CONFLICT DO NOTHING'
)

SAVE_PAGE_FUNCTION: Final = (
    "CREATE OR REPLACE FUNCTION {schema}.{function}(p_name text, p_after bigint, "
    "p_offset bigint, p_rows jsonb, p_new text[], p_channel text, p_payload text) "
    "RETURNS void LANGUAGE plpgsql AS $body$ "
    "DECLARE recorded bigint; moved int; s_ids text[]; s_ws text[]; s_opened bigint[]; "
    "s_message bigint[]; s_response bigint[]; s_closed bigint[]; "
    "BEGIN "
    "IF p_after IS NOT NULL THEN "
    "  SELECT notification_id INTO recorded FROM {schema}.{tracking} "
    "  WHERE application_name = p_name FOR UPDATE; "
    "  IF COALESCE(recorded, 0) <> p_after THEN "
    "    RAISE EXCEPTION 'projection position % moved to % while a batch computed after % "
    "was projected', p_name, COALESCE(recorded, 0), p_after "
    "    USING ERRCODE = 'integrity_constraint_violation'; "
    "  END IF; "
    "END IF; "
    "INSERT INTO {schema}.{tracking} AS t (application_name, notification_id) "
    "VALUES (p_name, p_offset) ON CONFLICT (application_name) DO UPDATE "
    "SET notification_id = EXCLUDED.notification_id "
    "WHERE t.notification_id < EXCLUDED.notification_id; "
    "GET DIAGNOSTICS moved = ROW_COUNT; "
    "IF moved = 0 THEN "
    "  RAISE EXCEPTION 'Failed to record tracking for % %', p_name, p_offset "
    "  USING ERRCODE = 'integrity_constraint_violation'; "
    "END IF; "
    "IF p_rows IS NULL THEN RETURN; END IF; "
    "SELECT array_agg(c.conversation_id), array_agg(c.workspace_id), array_agg(c.opened_us), "
    "array_agg(c.first_message_us), array_agg(c.first_response_us), array_agg(c.closed_us) "
    "INTO s_ids, s_ws, s_opened, s_message, s_response, s_closed "
    f"FROM {_ROWS} {stored_moments_of('r->>0')} "
    "WHERE NOT (r->>0 = ANY(COALESCE(p_new, '{{}}'))); "
    "s_ids := COALESCE(s_ids, '{{}}'); "
    f"{_INSERT} WHERE NOT (r->>0 = ANY(s_ids)); "
    "IF cardinality(s_ids) > 0 THEN "
    f"  {_INSERT} WHERE r->>0 = ANY(s_ids){CONFLICT}; "
    "END IF; "
    f"{_MARK}; "
    "PERFORM pg_notify(p_channel, p_payload); "
    "END $body$"
)
#: the call; its arguments in :data:`SAVE_PAGE_FUNCTION`'s order
SQL_SAVE_PAGE: Final = ("SELECT {schema}.{function}(%s, %s, %s, %s::jsonb, %s::text[], %s, %s)")
