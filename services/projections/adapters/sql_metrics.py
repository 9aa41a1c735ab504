"""Metrics of CONTRACT §3 / §6.6 aggregated inside PostgreSQL (the fast path).

:func:`services.projections.domain.metrics.compute` stays the reference. This module asks
PostgreSQL for the same numbers per bucket (local dates with ``AT TIME ZONE``,
``to_char`` keys, ``count``/``min``/``max``/``percentile_cont`` with ``FILTER``) and
builds the identical JSON, so only one row per bucket leaves the database instead
of one row per conversation. It answers only when it can be exact, else None and
the caller computes in Python:

- no business-hours schedule (business statistics then equal the calendar ones;
  with a schedule each conversation needs the Python business clock);
- every moment between 1900 and 2150 (no date clamping, and every duration below
  2**53 microseconds converts to ``float8`` exactly, so ``x / 1e6`` is the same
  IEEE division as Python's);
- a region zone (``Europe/Madrid``) or ``UTC``: PostgreSQL reads other names
  such as ``CET`` as fixed-offset abbreviations first (:func:`zone_understood`);
- no average within the float error of ``fsum(values) / n`` of a rounding tie
  at 3 decimals: PostgreSQL returns the exact integer sum of microseconds, and
  only far from a tie is its rounding certainly the Python one.

Percentiles, min and max are the same IEEE operations in both (``percentile_cont``
computes ``lo + (hi - lo) * (q * (n - 1) - floor(...))`` like
:func:`~services.projections.domain.durations.percentile`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Final

from services.projections.application.ports import MetricsAggregator
from services.projections.domain.durations import STAT_KEYS, seconds
from services.projections.domain.metrics import (
    OPENED_COUNTED,
    TIME_GROUPINGS,
    UNRESOLVED,
    MetricsQuery,
    compute,
    fact_window,
    time_key,
    to_us,
)
from services.projections.domain.rows import BusinessClock

SAFE_LOW_US: Final = to_us(datetime(1900, 1, 1, tzinfo=UTC))
SAFE_HIGH_US: Final = to_us(datetime(2150, 1, 1, tzinfo=UTC))
_DIMENSION: Final = {
    "channel": "coalesce(nullif(channel, ''), 'none')",
    "opened_by": "opened_by",
    "closed_by": "coalesce(nullif(closed_by, ''), 'none')",
    "assignee": "coalesce(nullif(assignee_id, ''), 'unassigned')",
    "team": "coalesce(nullif(team_id, ''), 'unassigned')",
}
_TIME_FORMAT: Final = {"day": "YYYY-MM-DD", "week": 'IYYY-"W"IW', "month": "YYYY-MM"}
_MOMENTS: Final = ("opened_us", "closed_us", "first_message_us", "first_response_us")
_UNRESOLVED_SQL: Final = ", ".join(f"'{name}'" for name in sorted(UNRESOLVED))


def _local(column: str) -> str:
    safe = f"{column} BETWEEN %(safe_low)s AND %(safe_high)s"
    return (f"CASE WHEN {safe} THEN ((timestamptz 'epoch' + {column} * interval "
            "'1 microsecond') AT TIME ZONE %(tz)s)::date END")


def _in_range(day: str) -> str:
    return (f"(%(low)s::date IS NULL OR {day} >= %(low)s::date) "
            f"AND (%(high)s::date IS NULL OR {day} <= %(high)s::date)")


def _key(group_by: str, day: str) -> str:
    """The bucket as PostgreSQL groups it: a date (the day, the Monday of its ISO week,
    the 1st of its month; :func:`~.metrics.time_key` names it) or the dimension."""
    if group_by == "day":
        return day
    if group_by == "week":
        return f"{day} - (extract(isodow FROM {day})::int - 1)"
    if group_by == "month":
        return f"{day} - (extract(day FROM {day})::int - 1)"
    return "dim"


def _stats(kind: int) -> str:
    only = f"FILTER (WHERE kind = {kind})"
    return (f"count(v) {only}, sum(us) {only}, min(v) {only}, max(v) {only}, "
            f"percentile_cont(ARRAY[0.5, 0.9]::float8[]) WITHIN GROUP (ORDER BY v) {only}")


def aggregate_sql(group_by: str, window: bool) -> str:
    """The one statement for ``group_by`` (``{schema}`` left to fill); named parameters
    ``ws, tz, low, high, safe_low, safe_high`` and, with ``window``, ``w_low, w_high``.

    One scan (materialised, local dates computed once per row): each conversation
    yields its opening (kind 1), first response (2) and closing (3) with
    :func:`_key`'s bucket, and one kind-0 row when a moment is outside the safe
    range (then the caller declines)."""
    dim = _DIMENSION.get(group_by, "NULL::text")
    key_type = "date" if group_by in TIME_GROUPINGS else "text"
    bad = " OR ".join(f"{c} NOT BETWEEN %(safe_low)s AND %(safe_high)s" for c in _MOMENTS)
    windowed = ("" if not window else
                " AND (opened_us >= %(w_low)s AND opened_us < %(w_high)s"
                " OR closed_us >= %(w_low)s AND closed_us < %(w_high)s"
                " OR first_response_us >= %(w_low)s AND first_response_us < %(w_high)s)")
    opened_key = _key(group_by, "od") if group_by in OPENED_COUNTED else "NULL"
    response_key = (_key(group_by, "rd") if group_by != "closed_by"
                    else f"CASE WHEN closed_us IS NOT NULL THEN {_key(group_by, 'rd')} END")
    response_us = "CASE WHEN NOT bad THEN greatest(0, first_response_us - first_message_us) END"
    closed_us = "CASE WHEN NOT bad THEN greatest(0, closed_us - opened_us) END"
    resolved = f"(closed_by IS NULL OR closed_by NOT IN ({_UNRESOLVED_SQL}))"
    return (
        "WITH f AS MATERIALIZED (SELECT opened_us, closed_us, first_message_us, "
        f"first_response_us, closed_by, coalesce(recontact, false) AS rc, {dim} AS dim, "
        f"{_local('opened_us')} AS od, {_local('closed_us')} AS cd, "
        f"{_local('first_response_us')} AS rd, coalesce({bad}, false) AS bad "
        "FROM {schema}.conversations WHERE workspace_id = %(ws)s" + windowed + "), "
        "e AS ("
        f"SELECT ({opened_key})::{key_type} AS key, 1 AS kind, rc, NULL::float8 AS v, "
        f"NULL::bigint AS us FROM f WHERE {_in_range('od')} "
        f"UNION ALL SELECT ({response_key})::{key_type}, 2, false, "
        f"({response_us})::float8 / 1000000::float8, {response_us} FROM f "
        "WHERE first_response_us IS NOT NULL AND first_message_us IS NOT NULL "
        f"AND {_in_range('rd')} "
        f"UNION ALL SELECT ({_key(group_by, 'cd')})::{key_type}, 3, false, "
        f"CASE WHEN {resolved} THEN ({closed_us})::float8 / 1000000::float8 END, "
        f"CASE WHEN {resolved} THEN {closed_us} END "
        f"FROM f WHERE closed_us IS NOT NULL AND {_in_range('cd')} "
        "UNION ALL SELECT NULL, 0, false, NULL, NULL FROM f WHERE bad) "
        "SELECT GROUPING(key), key, count(*) FILTER (WHERE kind = 1), "
        "count(*) FILTER (WHERE kind = 1 AND rc), count(*) FILTER (WHERE kind = 3), "
        f"{_stats(2)}, {_stats(3)}, count(*) FILTER (WHERE kind = 0) "
        "FROM e GROUP BY GROUPING SETS ((key), ())"
    )


def aggregate_params(query: MetricsQuery, window: tuple[int, int] | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ws": query.workspace_id, "tz": query.tz, "low": query.date_from,
        "high": query.date_to, "safe_low": SAFE_LOW_US, "safe_high": SAFE_HIGH_US}
    if window is not None:
        params |= {"w_low": window[0], "w_high": window[1]}
    return params


def zone_understood(tz: str) -> bool:
    """Whether PostgreSQL reads ``tz`` as the same IANA zone as ``zoneinfo``.

    PostgreSQL looks a name up among time-zone *abbreviations* first: ``CET`` is
    then a fixed +01:00 where the IANA zone ``CET`` keeps summer time. Region
    names (with a ``/``) and ``UTC`` are never such abbreviations of another offset.
    """
    return "/" in tz or tz == "UTC"


class NotExact(Exception):
    """PostgreSQL's answer may differ from the Python reference: compute in Python."""


def _average(count: int, total_us: int, largest: float) -> float:
    """``fsum(values) / count`` as :func:`seconds` shows it, from the exact sum."""
    exact = Fraction(total_us, count * 1_000_000)
    scaled = exact * 1000
    nearest_tie = math.floor(scaled - Fraction(1, 2)) + Fraction(1, 2)
    # fsum of rounded values, then / count: within 3 ulps of the largest value of the exact
    error = Fraction(8 * max(largest, 1e-300)) / 2**53 * 1000
    for tie in (nearest_tie - 1, nearest_tie, nearest_tie + 1):
        if abs(scaled - tie) <= error:
            raise NotExact(f"average {float(exact)} is too close to a rounding tie")
    shown = math.floor(scaled + Fraction(1, 2))
    return float(Fraction(shown, 1000))


def _duration(values: Sequence[Any]) -> dict[str, Any]:
    count, total_us, low, high, percentiles = values
    if not count:
        return {key: 0 if key == "count" else None for key in STAT_KEYS}
    exact = {"count": count, "avg": _average(count, int(total_us), float(high)),
             "p50": percentiles[0], "p90": percentiles[1], "min": low, "max": high}
    return {key: exact[key] if key == "count" else seconds(exact[key]) for key in STAT_KEYS}


#: the fields of the metrics and of a row as the reference builds them, in order
_REFERENCE: Final = compute(MetricsQuery(""), [])
_REFERENCE_FIELDS: Final = list(_REFERENCE["total"])
_REFERENCE_TOP: Final = list(_REFERENCE)


def rows_to_metrics(query: MetricsQuery, found: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The metrics JSON from the statement's rows; :class:`NotExact` when it may differ."""
    opened_null = query.group_by not in OPENED_COUNTED
    rows: list[dict[str, Any]] = []
    total: dict[str, Any] | None = None
    for values in found:
        grouping, key, opened, recontacts, closed = values[:5]
        if values[15]:
            raise NotExact(f"{values[15]} conversations have moments outside 1900..2150")
        responses, resolutions = _duration(values[5:10]), _duration(values[10:15])
        if grouping == 1 or key is not None:
            name = (None if grouping == 1 else time_key(key, query.group_by)
                    if query.group_by in TIME_GROUPINGS else key)
            row = {"key": name,
                   "opened": None if opened_null and grouping == 0 else opened,
                   "closed": closed, "resolution_seconds": resolutions,
                   "first_response_seconds": responses,
                   "first_response_business_seconds": dict(responses),
                   "resolution_business_seconds": dict(resolutions),
                   "recontacts": None if opened_null and grouping == 0 else recontacts}
            if grouping == 1:
                total = row
            else:
                rows.append(row)
    if total is None:  # no conversation at all: the aggregate's () set is still one row
        raise NotExact("no total row")
    if list(total) != _REFERENCE_FIELDS:  # the reference gained a measure: use it
        raise NotExact(f"fields {list(total)} are not {_REFERENCE_FIELDS}")
    rows.sort(key=lambda row: str(row["key"]))
    low, high = query.date_from, query.date_to
    result = {
        "workspace_id": query.workspace_id, "group_by": query.group_by, "tz": query.tz,
        "from": low.isoformat() if low else None, "to": high.isoformat() if high else None,
        "rows": rows, "total": total,
    }
    if list(result) != _REFERENCE_TOP:
        raise NotExact(f"fields {list(result)} are not {_REFERENCE_TOP}")
    return result


def metrics(store: Any, query: MetricsQuery,
            business: BusinessClock | None = None) -> dict[str, Any]:
    """The metrics JSON: from PostgreSQL's aggregates when the store has them and they
    are exact (:func:`aggregate_sql`), else :func:`compute` over the window's facts."""
    window = fact_window(query)
    if business is None and isinstance(store, MetricsAggregator):
        found = store.aggregate_metrics(query, window)
        if found is not None:
            return found
    facts: Any = store.facts(query.workspace_id, window)
    return compute(query, facts, business)
