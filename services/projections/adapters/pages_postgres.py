"""Page data of the Dashboard and the Reports drill-down, counted and paged in PostgreSQL.

The Python versions (``services/http/dashboard.py``, ``services/http/browse.py``)
stay the reference and serve SQLite; these statements return the same answers
without moving every open conversation, or every row of a bucket's day, into Python:

- :func:`open_counts`: open conversations now, unassigned, per assignee and per
  channel (``GROUPING SETS``), and the longest-waiting ones (``LIMIT``), in the order
  ``open_summary`` sorts them;
- :func:`hour_edges` + :data:`HOURLY`: opened / closed per local hour of a day, the
  day cut at the instants where the zone's local hour changes (``width_bucket``);
- :func:`bucket_interval` + :func:`page_query`: the conversations behind one
  metrics number as a UTC interval of the measured moment plus equality filters,
  counted with ``count(*)`` and paged with ``LIMIT`` / ``OFFSET``.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date
from typing import Any, Final

from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row

from services.projections.adapters.store_sqlite import COLUMNS, row_from
from services.projections.domain.local_days import DAY_US, LocalDays, safe_day
from services.projections.domain.metrics import UNRESOLVED
from services.projections.domain.rows import ConversationRow
from services.runtime.pg import pg_text, sql, transient_retry

HOUR_US: Final = 3_600_000_000
SELECT_ROWS: Final = f"SELECT {', '.join(COLUMNS)} FROM {{schema}}.conversations"
_ACTIVITY: Final = "coalesce(nullif(last_activity_us, 0), opened_us)"
OPEN_COUNTS: Final = (
    "SELECT GROUPING(a) AS ga, GROUPING(ch) AS gc, a, ch, count(*)::int, "
    "count(*) FILTER (WHERE unassigned)::int FROM (SELECT "
    "coalesce(nullif(assignee_id, ''), 'unassigned') AS a, "
    "coalesce(nullif(channel, ''), 'none') AS ch, assignee_id IS NULL AS unassigned "
    "FROM {schema}.conversations WHERE workspace_id = %s AND closed_us IS NULL) AS o "
    "GROUP BY GROUPING SETS ((a), (ch), ())")
LONGEST_WAITING: Final = (
    " WHERE workspace_id = %s AND closed_us IS NULL "
    f"ORDER BY {_ACTIVITY}, contact_id, opened_us, conversation_id LIMIT %s")
HOURLY: Final = (
    "SELECT 1, width_bucket(opened_us, %(edges)s::bigint[]), count(*)::int "
    "FROM {schema}.conversations WHERE workspace_id = %(ws)s AND opened_us >= %(low)s "
    "AND opened_us < %(high)s GROUP BY 2 UNION ALL "
    "SELECT 3, width_bucket(closed_us, %(edges)s::bigint[]), count(*)::int "
    "FROM {schema}.conversations WHERE workspace_id = %(ws)s AND closed_us >= %(low)s "
    "AND closed_us < %(high)s GROUP BY 2")
#: filter name -> (column, the key that stands for NULL) as browse.attribute_key spells it
ATTRIBUTES: Final = {
    "channel": ("channel", "none"), "assignee": ("assignee_id", "unassigned"),
    "team": ("team_id", "unassigned"), "opened_by": ("opened_by", None),
    "closed_by": ("closed_by", "none"),
}
_UNRESOLVED_SQL: Final = ", ".join(f"'{name}'" for name in sorted(UNRESOLVED))


def hour_edges(tz: str, start_us: int, end_us: int) -> tuple[list[int], list[int]]:
    """``(edges, hours)``: ``edges[i]`` is an instant of ``[start, end)`` from which the
    local hour is ``hours[i]`` (``edges[0] == start``); the hour changes only at edges."""
    days = LocalDays(tz, start_us, end_us)
    edges: list[int] = []
    hours: list[int] = []
    moment = start_us
    while moment < end_us:
        index = bisect_right(days.changes, moment)
        offset = days.offsets[index]
        edges.append(moment)
        hours.append((moment + offset) // HOUR_US % 24)
        following = ((moment + offset) // HOUR_US + 1) * HOUR_US - offset
        if index < len(days.changes):
            following = min(following, days.changes[index])
        moment = following
    return edges, hours


def open_summary_from(counts: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The counting part of ``open_summary`` from :data:`OPEN_COUNTS`' rows."""
    total = unassigned = 0
    by_assignee: list[tuple[str, int]] = []
    by_channel: list[tuple[str, int]] = []
    for grouping_a, grouping_c, assignee, channel, count, nobody in counts:
        if grouping_a and grouping_c:
            total, unassigned = count, nobody
        elif not grouping_a:
            by_assignee.append((assignee, count))
        else:
            by_channel.append((channel, count))

    def ordered(pairs: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return [{"key": k, "count": n} for k, n in sorted(pairs, key=lambda kv: (-kv[1], kv[0]))]

    return {"total": total, "unassigned": unassigned, "by_assignee": ordered(by_assignee),
            "by_channel": ordered(by_channel)}


def bucket_interval(tz: str, first: date | None, last: date | None) -> tuple[int, int]:
    """The UTC instants ``[low, high)`` whose local date in ``tz`` is in ``first..last``;
    :class:`NotExact` when the zone's local dates go back near an end."""
    low_day, high_day = safe_day(first), safe_day(last)
    around = low_day if low_day is not None else high_day if high_day is not None else 20_000
    days = LocalDays(tz, around * DAY_US - 3 * DAY_US, around * DAY_US + 3 * DAY_US)
    low, high = -(2**63), 2**63 - 1
    if low_day is not None:
        low = days.start(low_day)
        days.check_monotone(low - 2 * DAY_US, low + 2 * DAY_US)
    if high_day is not None:
        high = days.start(high_day + 1)
        days.check_monotone(high - 2 * DAY_US, high + 2 * DAY_US)
    return low, high


def page_query(measure: str | None, interval: tuple[int, int] | None,
               equal: list[tuple[str, str]], contact: str | None,
               status: str | None) -> tuple[str, list[Any]]:
    """The ``WHERE`` (after ``workspace_id = %s``) and its parameters."""
    where: list[str] = []
    params: list[Any] = []
    if measure is not None and interval is not None:
        column = "opened_us" if measure == "opened" else "closed_us"
        where.append(f"{column} >= %s AND {column} < %s")
        params += list(interval)
        if measure == "resolved":
            where.append(f"(closed_by IS NULL OR closed_by NOT IN ({_UNRESOLVED_SQL}))")
    for name, wanted in equal:
        column, missing = ATTRIBUTES[name]
        where.append(f"{column} = %s" if missing is None
                     else f"coalesce({column}, '{missing}') = %s")
        params.append(wanted)
    if contact is not None:
        where.append("contact_id = %s")
        params.append(pg_text(contact))
    if status == "open":
        where.append("closed_us IS NULL")
    elif status == "closed":
        where.append("closed_us IS NOT NULL")
    return "".join(f" AND {w}" for w in where), params



class PostgresPages:
    """The page-data statements of :class:`~.store_postgres.PostgresReadModelStore`."""

    datastore: PostgresDatastore

    def _run(self, template: str, params: Any) -> list[tuple[Any, ...]]:
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(sql(template, self.datastore.schema), params)
            return curs.fetchall()

    @transient_retry
    def open_overview(self, workspace_id: str, longest: int
                      ) -> tuple[dict[str, Any], list[ConversationRow]]:
        """Counts of the open conversations and the ``longest`` waiting ones."""
        counts = open_summary_from(self._run(OPEN_COUNTS, (workspace_id,)))
        rows = self._run(SELECT_ROWS + LONGEST_WAITING, (workspace_id, longest))
        return counts, [row_from(values) for values in rows]

    @transient_retry
    def hourly_counts(self, workspace_id: str, tz: str, start_us: int,
                      end_us: int) -> list[dict[str, Any]]:
        """Opened and closed per local hour of ``[start, end)`` (as dashboard.hourly)."""
        edges, hours = hour_edges(tz, start_us, end_us)
        found = self._run(HOURLY, {"ws": workspace_id, "edges": edges, "low": start_us,
                                   "high": end_us})
        result = [{"hour": h, "opened": 0, "closed": 0} for h in range(24)]
        for kind, bucket, count in found:
            result[hours[bucket - 1]]["opened" if kind == 1 else "closed"] += count
        return result

    @transient_retry
    def conversation_page(self, workspace_id: str, where: str, params: list[Any],
                          offset: int, limit: int | None
                          ) -> tuple[int, list[ConversationRow]]:
        """``(total, rows)``: rows ``offset..offset+limit`` of those matching ``where``
        (:func:`page_query`), in the order of ``conversations``."""
        condition = " WHERE workspace_id = %s" + where
        total = self._run("SELECT count(*) FROM {schema}.conversations" + condition,
                          [workspace_id, *params])[0][0]
        # "+ 0": with a bucket's interval, find its rows by that index and sort them,
        # rather than walk every row of the workspace in opened_us order
        first = "opened_us + 0" if " AND closed_us >= " in where else "opened_us"
        page = f" ORDER BY {first}, contact_id, conversation_id OFFSET %s" + (
            " LIMIT %s" if limit is not None else "")
        rows = self._run(SELECT_ROWS + condition + page,
                         [workspace_id, *params, offset, *([limit] if limit else [])])
        return int(total), [row_from(values) for values in rows]
