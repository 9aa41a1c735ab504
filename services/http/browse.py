"""Conversation lists for the Reports page: filters, buckets (drill-down), pages, CSV.

``GET /v1/workspaces/{ws}/conversations`` keeps its CONTRACT §4 answer (a JSON
array, all rows) and takes more, optional, parameters:

- attribute filters with the metrics' dimension keys: ``channel`` (``none`` =
  no channel), ``assignee`` / ``team`` (``unassigned``), ``opened_by``, ``closed_by``;
- a metrics bucket: ``measure`` (``opened``, ``closed`` or ``resolved`` = closed
  but not by merge or inactivity, as counted in resolution statistics) with ``from``/``to``/``tz``
  and optionally ``group_by`` + ``key``: exactly the conversations behind that
  number of ``GET /metrics`` with the same parameters;
- ``limit`` (1..1000) and ``offset``: one page; ``X-Total-Count`` gives the total;
- ``format=csv``: the CSV of ``bonychat conversations --format csv``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from aiohttp import web

from services.cli.output import render_conversations
from services.http.context import CONTEXT
from services.http.errors import ApiError, json_response
from services.http.queries import STATUSES, csv_response, parse_date, parse_zone
from services.projections.adapters.pages_postgres import bucket_interval, page_query
from services.projections.application.ports import PageCounter
from services.projections.application.queries import workspace_settings
from services.projections.domain.local_days import NotExact
from services.projections.domain.metrics import (
    GROUPINGS,
    TIME_GROUPINGS,
    UNRESOLVED,
    MetricsQuery,
    RowWindow,
    fact_window,
    time_key,
)
from services.projections.domain.rows import BusinessClock, ConversationRow
from services.projections.domain.service_levels import business_clock

MEASURES: Final = ("opened", "closed", "resolved")
MAX_LIMIT: Final = 1_000
#: filter parameter -> (row attribute, the key that stands for "no value")
ATTRIBUTE_FILTERS: Final = {
    "channel": ("channel", "none"), "assignee": ("assignee_id", "unassigned"),
    "team": ("team_id", "unassigned"), "opened_by": ("opened_by", None),
    "closed_by": ("closed_by", "none"),
}
_DIMENSION_PARAMS: Final = {"channel": "channel", "opened_by": "opened_by",
                            "closed_by": "closed_by", "assignee": "assignee", "team": "team"}


def _param(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return value if value else None


@dataclass(frozen=True, slots=True)
class Bucket:
    """The conversations counted by one metrics number."""

    measure: str
    zone: ZoneInfo
    date_from: date | None
    date_to: date | None
    group_by: str | None
    key: str | None

    def moment(self, row: ConversationRow) -> int | None:
        if self.measure == "opened":
            return row.opened_us
        if self.measure == "resolved" and row.closed_by in UNRESOLVED:
            return None
        return row.closed_us

    def window(self) -> RowWindow:
        """A generous UTC interval of the measured moment (the store's pre-filter)."""
        column: Literal["opened_us", "closed_us"] = (
            "opened_us" if self.measure == "opened" else "closed_us")
        first, last = self.date_from, self.date_to
        if self.group_by in TIME_GROUPINGS and self.key is not None:
            start, end = key_dates(self.group_by, self.key)
            if start is not None and end is not None:
                first = start if first is None else max(first, start)
                last = end if last is None else min(last, end)
        low, high = fact_window(MetricsQuery("", date_from=first, date_to=last)) or (
            -(2**63) + 1, 2**63 - 1)
        return column, low, high

    def __call__(self, row: ConversationRow) -> bool:
        micros = self.moment(row)
        if micros is None:
            return False
        day = local_date(micros, self.zone)
        if (self.date_from and day < self.date_from) or (self.date_to and day > self.date_to):
            return False
        if self.group_by is None:
            return True
        if self.group_by in TIME_GROUPINGS:
            return time_key(day, self.group_by) == self.key
        return attribute_key(row, _DIMENSION_PARAMS[self.group_by]) == self.key


def key_dates(group_by: str, key: str) -> tuple[date | None, date | None]:
    """First and last local date of a day / week / month key; (None, None) if malformed."""
    try:
        if group_by == "day":
            day = date.fromisoformat(key)
            return day, day
        if group_by == "week":
            year, week = key.split("-W")
            monday = date.fromisocalendar(int(year), int(week), 1)
            return monday, monday + timedelta(days=6)
        year, month = key.split("-")
        first = date(int(year), int(month), 1)
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first, following - timedelta(days=1)
    except (ValueError, OverflowError):
        return None, None


def local_date(micros: int, zone: ZoneInfo) -> date:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.astimezone(zone).date()


def attribute_key(row: ConversationRow, name: str) -> str | None:
    """The row's value for filter ``name`` spelled as a metrics dimension key."""
    attribute, missing = ATTRIBUTE_FILTERS[name]
    value = getattr(row, attribute)
    return missing if value is None else str(value)


def _matches(name: str, wanted: str) -> Callable[[ConversationRow], bool]:
    return lambda row: attribute_key(row, name) == wanted


def bucket_of(query: Mapping[str, str]) -> Bucket | None:
    """The bucket named by ``measure``/``group_by``/``key``/``from``/``to``/``tz``, or 400."""
    measure = _param(query, "measure")
    group_by, key = _param(query, "group_by"), query.get("key")
    if measure is None:
        if group_by is not None or key is not None:
            raise ApiError(400, "group_by and key need measure (opened, closed or resolved)")
        return None
    if measure not in MEASURES:
        raise ApiError(400, f"measure: {measure!r} is not one of {', '.join(MEASURES)}")
    if group_by is not None and group_by not in GROUPINGS:
        raise ApiError(400, f"group_by: {group_by!r} is not one of {', '.join(GROUPINGS)}")
    if (group_by is None) != (key is None):
        raise ApiError(400, "group_by and key go together")
    return Bucket(measure, ZoneInfo(parse_zone(_param(query, "tz"))),
                  parse_date("from", _param(query, "from")),
                  parse_date("to", _param(query, "to")), group_by, key)


def row_filters(query: Mapping[str, str]) -> list[Callable[[ConversationRow], bool]]:
    """Predicates for the attribute filters and the bucket of ``query``."""
    checks: list[Callable[[ConversationRow], bool]] = []
    for name in ATTRIBUTE_FILTERS:
        wanted = _param(query, name)
        if wanted is not None:
            checks.append(_matches(name, wanted))
    bucket = bucket_of(query)
    if bucket is not None:
        checks.append(bucket)
    return checks


def page_of(query: Mapping[str, str]) -> tuple[int, int | None]:
    """``(offset, limit)``; ``limit`` None = every row."""
    def number(name: str, low: int, high: int | None) -> int | None:
        text = _param(query, name)
        if text is None:
            return None
        if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ApiError(400, f"{name}: {text!r} is not an integer {bound}")
        return int(text)
    return number("offset", 0, None) or 0, number("limit", 1, MAX_LIMIT)


def sql_condition(query: Mapping[str, str], bucket: Bucket | None,
                  status: str | None) -> tuple[str, list[Any]] | None:
    """The filters and the bucket of ``query`` as a store's ``WHERE`` (``page_query``),
    or None when only the row-by-row check is exact (then: :func:`select`)."""
    equal = [(name, wanted) for name in ATTRIBUTE_FILTERS
             if (wanted := _param(query, name)) is not None]
    interval = None
    if bucket is not None:
        first, last = bucket.date_from, bucket.date_to
        if bucket.group_by in TIME_GROUPINGS and bucket.key is not None:
            start, end = key_dates(bucket.group_by, bucket.key)
            if start is None or end is None or time_key(start, bucket.group_by) != bucket.key:
                return " AND false", []  # no local date has this key
            first = start if first is None else max(first, start)
            last = end if last is None else min(last, end)
            if first > last:
                return " AND false", []
        elif bucket.group_by is not None and bucket.key is not None:
            equal.append((_DIMENSION_PARAMS[bucket.group_by], bucket.key))
        try:
            interval = bucket_interval(bucket.zone.key, first, last)
        except NotExact:
            return None
    return page_query(None if bucket is None else bucket.measure, interval, equal,
                      _param(query, "contact"), status)


def select(rows: Iterable[ConversationRow],
           checks: list[Callable[[ConversationRow], bool]],
           business: BusinessClock | None = None) -> list[dict[str, Any]]:
    return [row.public(business) for row in rows if all(check(row) for check in checks)]


async def list_conversations(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{ws}/conversations`` with the filters of this module."""
    query = request.query
    status = _param(query, "status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"status: {status!r} is not one of {', '.join(STATUSES)}")
    fmt = _param(query, "format") or "json"
    if fmt not in ("json", "csv"):
        raise ApiError(400, f"format: {fmt!r} is not one of json, csv")
    checks = row_filters(query)
    offset, limit = page_of(query)
    store, events = request.app[CONTEXT].read_models, request.app[CONTEXT].events
    workspace = request.match_info["ws"]

    bucket = bucket_of(query)
    between = bucket.window() if bucket is not None else None

    def run() -> tuple[int, list[dict[str, Any]]]:
        clock = (business_clock(workspace_settings(events, workspace))
                 if events is not None else None)
        paged = isinstance(store, PageCounter)
        condition = sql_condition(query, bucket, status) if paged else None
        if isinstance(store, PageCounter) and condition is not None:
            total, page = store.conversation_page(workspace, *condition, offset, limit)
            return total, [row.public(clock) for row in page]
        rows = store.conversations(workspace, _param(query, "contact"), status, between)
        selected = select(rows, checks, clock)
        if limit is not None or offset:
            return len(selected), selected[offset:offset + limit if limit is not None else None]
        return len(selected), selected

    total, rows = await asyncio.to_thread(run)
    if fmt == "csv":
        text = await asyncio.to_thread(render_conversations, rows, "csv")
        return csv_response(text, f"conversations-{workspace}.csv")
    return json_response(rows, headers={"X-Total-Count": str(total)})
