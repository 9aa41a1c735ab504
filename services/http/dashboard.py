"""``GET /v1/workspaces/{ws}/dashboard``: what the live Dashboard shows, in one answer.

- ``open``: conversations open now: total, unassigned, per assignee and per
  channel (the metrics' dimension keys), and the longest-waiting ones (least
  recent activity first; activity = ``last_activity_at`` when rows have it,
  else the opening).
- ``today``: the metrics ``total`` of today in ``tz`` (exactly what
  ``GET /metrics?from=TODAY&to=TODAY&tz=`` answers, including any fields the
  metrics gain), and opened/closed per local hour for the chart.

``tz`` defaults like the metrics: the workspace's ``timezone`` setting (CONTRACT
§6); the answer's ``tz`` names the zone used.

``now`` (RFC 3339, optional) fixes the clock, for reproducible answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web

from schemas.moments import format_micros, to_micros
from services.conversation.application.ports import EventStore
from services.http.context import CONTEXT
from services.http.errors import ApiError
from services.http.errors import json_response as respond
from services.http.queries import parse_zone
from services.projections.application.ports import MetricsAggregator, PageCounter, ReadModelStore
from services.projections.application.queries import workspace_settings
from services.projections.domain.metrics import Fact, MetricsQuery, compute
from services.projections.domain.rows import ConversationRow

LONGEST_WAITING: Final = 10
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"now: {text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise ApiError(400, f"now: {text!r} has no UTC offset")
    return moment.astimezone(UTC)


def _counts(values: Iterable[str]) -> list[dict[str, Any]]:
    """``[{"key", "count"}]`` largest first, then by key."""
    return [{"key": k, "count": n}
            for k, n in sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))]


def waiting(row: dict[str, Any], now_us: int, row_us: int) -> dict[str, Any]:
    """A public row with ``waiting_seconds`` since its last activity."""
    return {**row, "waiting_seconds": max(0, now_us - row_us) / 1_000_000}


def last_activity_us(row: ConversationRow) -> int:
    """The row's last activity (CONTRACT §6.4), or its opening when it has none."""
    return row.last_activity_us or row.opened_us


def open_summary(rows: list[ConversationRow], now_us: int) -> dict[str, Any]:
    """The ``open`` part: ``rows`` are the workspace's open conversations."""
    waiting_rows = sorted(rows, key=lambda r: (last_activity_us(r), r.contact_id))
    return {
        "total": len(rows),
        "unassigned": sum(row.assignee_id is None for row in rows),
        "by_assignee": _counts(row.assignee_id or "unassigned" for row in rows),
        "by_channel": _counts(row.channel or "none" for row in rows),
        "longest_waiting": [waiting(row.public(), now_us, last_activity_us(row))
                            for row in waiting_rows[:LONGEST_WAITING]],
    }


def hourly(facts: list[Fact], zone: ZoneInfo, start: datetime,
           end: datetime) -> list[dict[str, Any]]:
    """Opened and closed per local hour of the day ``[start, end)``."""
    hours = [{"hour": h, "opened": 0, "closed": 0} for h in range(24)]
    low, high = to_micros(start), to_micros(end)

    def hour_of(micros: int) -> int:
        return (_EPOCH + timedelta(microseconds=micros)).astimezone(zone).hour

    for fact in facts:
        if low <= fact.opened_us < high:
            hours[hour_of(fact.opened_us)]["opened"] += 1
        if fact.closed_us is not None and low <= fact.closed_us < high:
            hours[hour_of(fact.closed_us)]["closed"] += 1
    return hours


def summary(store: ReadModelStore, workspace: str, tz: str, now: datetime) -> dict[str, Any]:
    """The dashboard answer. A store that counts in SQL (PostgreSQL: ``open_overview``,
    ``aggregate_metrics``, ``hourly_counts``) gives the same numbers as the Python
    functions above, which serve the others (SQLite) and remain the reference."""
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    start = datetime(today.year, today.month, today.day, tzinfo=zone).astimezone(UTC)
    tomorrow = today + timedelta(days=1)
    end = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone).astimezone(UTC)
    query = MetricsQuery(workspace, "day", tz, today, today)
    day = (to_micros(start), to_micros(end))
    now_us = to_micros(now)
    if isinstance(store, PageCounter):
        counts, longest = store.open_overview(workspace, LONGEST_WAITING)
        open_now = {**counts, "longest_waiting": [
            waiting(row.public(), now_us, last_activity_us(row)) for row in longest]}
    else:
        open_now = open_summary(store.conversations(workspace, status="open"), now_us)
    metrics = (store.aggregate_metrics(query, day, None)
               if isinstance(store, MetricsAggregator) else None)
    if metrics is None or not isinstance(store, PageCounter):
        facts = list(store.facts(workspace, day))  # today, exactly
        metrics = compute(query, facts)
        per_hour = hourly(facts, zone, start, end)
    else:
        per_hour = store.hourly_counts(workspace, tz, *day)
    return {
        "workspace_id": workspace, "tz": tz, "as_of": format_micros(now_us),
        "open": open_now,
        "today": {**metrics["total"], "key": today.isoformat()},
        "hourly": per_hour,
    }


def dashboard_zone(query: Mapping[str, str], events: EventStore | None,
                   workspace: str) -> str:
    """``?tz=`` (400 when it is no zone), else the workspace's ``timezone`` as for the
    metrics (CONTRACT §6; UTC when this process has no event store). Blocking."""
    given = query.get("tz") or None
    if given is not None or events is None:
        return parse_zone(given)
    return workspace_settings(events, workspace).timezone


async def get_dashboard(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{ws}/dashboard?tz=&now=``."""
    tz = await asyncio.to_thread(dashboard_zone, request.query,
                                 request.app[CONTEXT].events, request.match_info["ws"])
    now = parse_now(request.query.get("now"))
    store = request.app[CONTEXT].read_models
    return respond(await asyncio.to_thread(summary, store, request.match_info["ws"], tz, now))
