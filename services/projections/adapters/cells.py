"""Metric cells: the metrics' inputs rolled up per UTC time slot, kept by PostgreSQL.

A cell holds, for one workspace, one *kind* of moment (1 opened, 2 first response,
3 closed) falling in one UTC slot, and one dimension key:

- ``dim`` 0 (no dimension, key ``''``): slots of 15 minutes. Every local midnight of
  a zone whose offsets are whole quarters of an hour is a slot boundary, so the
  day / week / month buckets of any such zone are unions of these cells.
- ``dim`` 1..5 (``channel``, ``opened_by``, ``closed_by``, ``assignee``, ``team``,
  keys spelled as :func:`~.metrics.compute` spells them): slots of six UTC hours
  (00, 06, 12, 18). A range ``from..to`` in a zone covers whole slots (cells) and
  at most two partial slots, aggregated from the conversation rows by the same
  statement (:data:`AGGREGATE`) over the partial interval.

Per cell: ``n`` contributions (opened / responded / closed), ``rc`` re-contacts
(kind 1), ``vals`` the durations in microseconds (kind 2: first response; kind 3:
resolution, only closings that count in resolution statistics), sorted, 8 bytes
each (``int8send``), and the same for business hours: ``bvals``, valid for the
schedule ``bkey`` (see :mod:`.business_cache`).

Cells are a function of the conversation rows only: :data:`AGGREGATE` computes
them for a list of units (workspace, level, kind, ``[low, high)``), and every
writer recomputes the units its rows touched, before and after the change, in the
transaction that writes the rows (:func:`units_of`). A rebuild is the same
statement over every unit, so replay and live processing give identical cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from services.projections.domain.metrics import UNRESOLVED

QUARTER_US: Final = 900_000_000
#: the dimensions' slot: a dirty unit costs its six hours of rows to recompute, a
#: year of one key is 1,460 cells to read
SPAN_US: Final = 6 * 3_600_000_000
#: level 0 = dimension 0 in quarter-hour slots; level 1 = dimensions 1..5 in 6-hour slots
LEVEL_US: Final = (QUARTER_US, SPAN_US)
DIMENSIONS: Final = ("", "channel", "opened_by", "closed_by", "assignee", "team")
KINDS: Final = (1, 2, 3)

TABLE_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS {schema}.metric_cells ("
    'workspace_id text COLLATE "C" NOT NULL, dim smallint NOT NULL, slot bigint NOT NULL, '
    'kind smallint NOT NULL, key text COLLATE "C" NOT NULL, n integer NOT NULL, '
    "rc integer NOT NULL, vals bytea NOT NULL, bkey text, bvals bytea, "
    "PRIMARY KEY (workspace_id, dim, slot, kind, key))",
    # durations are read whole by every query: stored out of line, not compressed
    "ALTER TABLE {schema}.metric_cells ALTER COLUMN vals SET STORAGE EXTERNAL, "
    "ALTER COLUMN bvals SET STORAGE EXTERNAL",
    # units whose rows changed since their cells were computed (writers only mark them;
    # the next metrics query of the workspace recomputes them)
    "CREATE TABLE IF NOT EXISTS {schema}.metric_cells_dirty ("
    'workspace_id text COLLATE "C" NOT NULL, lvl smallint NOT NULL, kind smallint NOT NULL, '
    "slot bigint NOT NULL, PRIMARY KEY (workspace_id, lvl, kind, slot))",
    # one row: false while rows were bulk-copied and cells not rebuilt yet. "_2": the
    # layout with 6-hour dimension slots; a database without it rebuilds its cells at start
    "CREATE TABLE IF NOT EXISTS {schema}.metric_cells_state_2 ("
    "id boolean PRIMARY KEY DEFAULT true CHECK (id), ready boolean NOT NULL)",
    "CREATE INDEX IF NOT EXISTS conversations_ws_closed "
    "ON {schema}.conversations (workspace_id, closed_us) WHERE closed_us IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS conversations_ws_responded "
    "ON {schema}.conversations (workspace_id, first_response_us) "
    "WHERE first_response_us IS NOT NULL",
)
#: relations the start-up check looks for (services/composition/postgres.py RELATIONS)
RELATIONS: Final = ("metric_cells", "metric_cells_state_2", "metric_cells_dirty",
                    "conversations_ws_closed", "conversations_ws_responded")

_RESOLVED: Final = ("(c.closed_by IS NULL OR c.closed_by NOT IN ("
                    + ", ".join(f"'{name}'" for name in sorted(UNRESOLVED)) + "))")
_CHANNEL: Final = "coalesce(nullif(c.channel, ''), 'none')"
_CLOSED_BY: Final = "coalesce(nullif(c.closed_by, ''), 'none')"
_ASSIGNEE: Final = "coalesce(nullif(c.assignee_id, ''), 'unassigned')"
_TEAM: Final = "coalesce(nullif(c.team_id, ''), 'unassigned')"


def _kind(kind: int, moment: str, value: str, business: str, *, keys: str,
          extra: str = "") -> tuple[str, str]:
    """The kind's contributions ``(of units, of every row)``: per unit, the rows whose
    moment is in it; for a rebuild, every row at both levels with its slot."""
    schedule = "NULL::text" if kind == 1 else "c.bkey"  # openings have no durations
    columns = (f"{kind} AS kind, c.recontact IS TRUE AS rc, {value} AS v, {business} AS bv, "
               f"{schedule} AS bkey, {keys}")
    of_units = (
        f"SELECT u.w, u.lvl, u.low AS slot, {columns} FROM u "
        f"JOIN {{schema}}.conversations c ON c.workspace_id = u.w AND c.{moment} >= u.low "
        f"AND c.{moment} < u.high WHERE u.kind = {kind}{extra}")
    of_all = (
        f"SELECT c.workspace_id AS w, l.lvl, c.{moment} - mod(mod(c.{moment}, l.size) "
        f"+ l.size, l.size) AS slot, {columns} FROM {{schema}}.conversations c CROSS JOIN l "
        f"WHERE c.{moment} IS NOT NULL{extra}")
    return of_units, of_all


_OPENED: Final = _kind(1, "opened_us", "NULL::bigint", "NULL::bigint",
                       keys=f"{_CHANNEL} AS k1, c.opened_by AS k2, NULL::text AS k3, "
                       "NULL::text AS k4, NULL::text AS k5")
_RESPONDED: Final = _kind(
    2, "first_response_us", "greatest(0, c.first_response_us - c.first_message_us)",
    "c.response_bus_us",
    keys=f"{_CHANNEL}, c.opened_by, CASE WHEN c.closed_us IS NOT NULL THEN {_CLOSED_BY} END, "
    f"{_ASSIGNEE}, {_TEAM}", extra=" AND c.first_message_us IS NOT NULL")
_CLOSED: Final = _kind(
    3, "closed_us", f"CASE WHEN {_RESOLVED} THEN greatest(0, c.closed_us - c.opened_us) END",
    f"CASE WHEN {_RESOLVED} THEN c.resolution_bus_us END",
    keys=f"{_CHANNEL}, c.opened_by, {_CLOSED_BY}, {_ASSIGNEE}, {_TEAM}")

_TAIL: Final = (
    "SELECT e.w, d.dim, e.slot, e.kind, d.key, count(*)::int, count(*) FILTER (WHERE e.rc)::int, "
    "coalesce(string_agg(int8send(e.v), ''::bytea ORDER BY e.v), ''::bytea), "
    "CASE WHEN count(e.bkey) = count(*) AND min(e.bkey) = max(e.bkey) THEN min(e.bkey) END, "
    "CASE WHEN count(e.bkey) = count(*) AND min(e.bkey) = max(e.bkey) THEN "
    "coalesce(string_agg(int8send(e.bv), ''::bytea ORDER BY e.bv), ''::bytea) END "
    "FROM e CROSS JOIN LATERAL (VALUES (0, ''), (1, e.k1), (2, e.k2), (3, e.k3), (4, e.k4), "
    "(5, e.k5)) AS d(dim, key) "
    "WHERE (e.lvl = 0) = (d.dim = 0) AND d.key IS NOT NULL AND d.dim = ANY({dims}) "
    "GROUP BY e.w, d.dim, e.slot, e.kind, d.key")
COLUMNS: Final = "workspace_id, dim, slot, kind, key, n, rc, vals, bkey, bvals"
_INSERT: Final = f"INSERT INTO {{schema}}.metric_cells ({COLUMNS}) "
#: the cells of units ``(w, lvl, kind, low, high)`` given as arrays %(w)s, %(lvl)s,
#: %(kind)s, %(low)s, %(high)s; ``dims`` (%(dims)s) limits the dimensions. Columns:
#: workspace_id, dim, slot, kind, key, n, rc, vals, bkey, bvals (bkey: the rows'
#: common schedule key when each row has its business values, else NULL)
AGGREGATE: Final = (
    "WITH u AS (SELECT * FROM unnest(%(w)s::text[], %(lvl)s::int[], %(kind)s::int[], "
    "%(low)s::bigint[], %(high)s::bigint[]) AS u(w, lvl, kind, low, high)), "
    f"e AS ({_OPENED[0]} UNION ALL {_RESPONDED[0]} UNION ALL {_CLOSED[0]}) "
    + _TAIL.replace("{dims}", "%(dims)s::int[]"))
INSERT_UNITS: Final = AGGREGATE.replace("SELECT e.w, d.dim", _INSERT + "SELECT e.w, d.dim")
#: every cell from every row (one scan; the same contributions as AGGREGATE). Its
#: sort of every contribution is most of the work: grouped by the slot first, most
#: comparisons end at that bigint instead of going through the five workspace ids
#: and the dimension (-40 % of PostgreSQL's CPU for 2.2 M contributions; same cells)
REBUILD: Final = (
    f"WITH l AS (SELECT * FROM (VALUES (0, {QUARTER_US}::bigint), (1, {SPAN_US}::bigint)) "
    f"AS l(lvl, size)), e AS ({_OPENED[1]} UNION ALL {_RESPONDED[1]} UNION ALL {_CLOSED[1]}) "
    + _INSERT + _TAIL.replace("{dims}", "ARRAY[0, 1, 2, 3, 4, 5]").replace(
        "GROUP BY e.w, d.dim, e.slot, e.kind, d.key", "GROUP BY e.slot, e.kind, d.dim, e.w, d.key"))
#: :data:`REBUILD` of one part of the cells (%(part)s of %(parts)s, by a hash of the
#: slot), so that several connections rebuild them at once (``bonychat replay``)
REBUILD_PART: Final = REBUILD.replace(
    "GROUP BY", "AND mod(hashint8(e.slot)::bigint + 2147483648, %(parts)s) = %(part)s GROUP BY")
DELETE_UNITS: Final = (
    "DELETE FROM {schema}.metric_cells m USING unnest(%(w)s::text[], %(lvl)s::int[], "
    "%(kind)s::int[], %(low)s::bigint[]) AS u(w, lvl, kind, low) "
    "WHERE m.workspace_id = u.w AND (m.dim = 0) = (u.lvl = 0) AND m.slot = u.low "
    "AND m.kind = u.kind")
ALL_DIMS: Final = list(range(len(DIMENSIONS)))

Unit = tuple[str, int, int, int]  # workspace, level, kind, slot start (us)


def slot_of(micros: int, level: int) -> int:
    """The start of the level's UTC slot holding ``micros`` (floor, negatives too)."""
    size = LEVEL_US[level]
    return micros - micros % size


def units_of(workspace: str, opened_us: int | None, first_message_us: int | None,
             first_response_us: int | None, closed_us: int | None) -> Iterable[Unit]:
    """The units a conversation row contributes to (both levels, each of its moments)."""
    moments = ((1, opened_us), (2, first_response_us if first_message_us is not None
                                else None), (3, closed_us))
    for kind, moment in moments:
        if moment is not None:
            for level in (0, 1):
                yield workspace, level, kind, slot_of(moment, level)


def page_units(moments: Iterable[Sequence[Any]]) -> set[Unit]:
    """The units of many rows at once: :func:`units_of` of each ``(workspace, opened,
    first message, first response, closed)``, unrolled (a page of the projections
    writes a thousand rows; the generator per row cost ~2 µs of it).

    Each row's moments go into one set as quarter-hour slots ``(workspace, kind,
    slot)``; both levels' units are then made once per distinct slot (a 6-hour slot
    is a whole number of quarters, so the quarter's start gives the same 6-hour slot
    as the moment): the rows of a page share their slots far more often than not."""
    quarter, span = LEVEL_US
    slots: set[tuple[str, int, int]] = set()
    add = slots.add
    for workspace, opened, first_message, first_response, closed in moments:
        if opened is not None:
            add((workspace, 1, opened - opened % quarter))
        if first_response is not None and first_message is not None:
            add((workspace, 2, first_response - first_response % quarter))
        if closed is not None:
            add((workspace, 3, closed - closed % quarter))
    units: set[Unit] = set()
    unit = units.add
    for workspace, kind, slot in slots:
        unit((workspace, 0, kind, slot))
        unit((workspace, 1, kind, slot - slot % span))
    return units


def unit_arrays(units: Iterable[Unit]) -> dict[str, list[Any]]:
    """Units as the arrays :data:`AGGREGATE` takes (sorted: locks in one order)."""
    ordered = sorted(set(units))
    return {"w": [u[0] for u in ordered], "lvl": [u[1] for u in ordered],
            "kind": [u[2] for u in ordered], "low": [u[3] for u in ordered],
            "high": [u[3] + LEVEL_US[u[1]] for u in ordered], "dims": ALL_DIMS}
