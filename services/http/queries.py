"""The analytics query API: metrics (CONTRACT §3) and conversation rows (§4).

Parameters follow the CLI's rules: ``YYYY-MM-DD`` dates, IANA time zones, the
same ``group_by`` values; an empty parameter (``?from=``) counts as absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any, Final

from aiohttp import web

from schemas.workspace import WorkspaceSettings
from services.cli.output import render_metrics
from services.conversation.application.ports import EventStore
from services.http.context import CONTEXT
from services.http.errors import ApiError, json_response
from services.projections.application.ports import ReadModelStore
from services.projections.application.queries import metrics_of, workspace_settings
from services.projections.domain.metrics import (
    GROUPINGS,
    MetricsQuery,
    calendar_date,
    time_zone,
)
from services.projections.domain.service_levels import schedule_of

STATUSES: Final = ("open", "closed")


def _param(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return value if value else None


def parse_date(name: str, text: str | None) -> date | None:
    """A calendar date ``YYYY-MM-DD`` (the CLI's ``--from``/``--to`` rule), or 400."""
    if text is None:
        return None
    try:
        return calendar_date(text)
    except ValueError as exc:
        raise ApiError(400, f"{name}: {exc}") from None


def parse_zone(text: str | None) -> str:
    """An IANA time zone name (default ``UTC``), or 400."""
    if text is None:
        return "UTC"
    try:
        return time_zone(text)
    except ValueError as exc:
        raise ApiError(400, f"tz: {exc}") from None


def csv_response(text: str, filename: str) -> web.Response:
    """``text`` plus the final newline the CLI prints, as a CSV download."""
    return web.Response(text=text + "\n", content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def metrics_query(workspace: str, query: Mapping[str, str]) -> MetricsQuery:
    """The :class:`MetricsQuery` of ``?group_by=&from=&to=&tz=``, or 400."""
    group_by = _param(query, "group_by") or "day"
    if group_by not in GROUPINGS:
        raise ApiError(400, f"group_by: {group_by!r} is not one of {', '.join(GROUPINGS)}")
    return MetricsQuery(workspace, group_by, parse_zone(_param(query, "tz")),
                        parse_date("from", _param(query, "from")),
                        parse_date("to", _param(query, "to")))


def _metrics(store: ReadModelStore, events: EventStore | None, query: MetricsQuery,
             tz_given: bool) -> dict[str, Any]:
    """Without ``tz`` the workspace's ``timezone``; business hours in force now (§6)."""
    settings = (workspace_settings(events, query.workspace_id) if events is not None
                else WorkspaceSettings())
    if not tz_given:
        query = replace(query, tz=settings.timezone)
    return metrics_of(store, query, schedule_of(settings))


async def get_metrics(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{ws}/metrics``: the metrics JSON of CONTRACT §3 (or CSV)."""
    query = metrics_query(request.match_info["ws"], request.query)
    fmt = _param(request.query, "format") or "json"
    if fmt not in ("json", "csv"):
        raise ApiError(400, f"format: {fmt!r} is not one of json, csv")
    context = request.app[CONTEXT]
    result = await asyncio.to_thread(_metrics, context.read_models, context.events, query,
                                     _param(request.query, "tz") is not None)
    if fmt == "csv":  # byte for byte what `bonychat metrics --format csv` prints
        return csv_response(render_metrics(result, "csv"),
                            f"metrics-{query.workspace_id}-{query.group_by}.csv")
    return json_response(result)
