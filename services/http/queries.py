"""The analytics query API: metrics (CONTRACT §3) and conversation rows (§4).

Parameters follow the CLI's rules: ``YYYY-MM-DD`` dates, IANA time zones, the
same ``group_by`` values; an empty parameter (``?from=``) counts as absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from aiohttp import web

from ..projections.metrics import GROUPINGS, MetricsQuery, calendar_date, compute, time_zone
from ..projections.ports import ReadModelStore
from .context import CONTEXT
from .errors import ApiError, json_response

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


def metrics_query(workspace: str, query: Mapping[str, str]) -> MetricsQuery:
    """The :class:`MetricsQuery` of ``?group_by=&from=&to=&tz=``, or 400."""
    group_by = _param(query, "group_by") or "day"
    if group_by not in GROUPINGS:
        raise ApiError(400, f"group_by: {group_by!r} is not one of {', '.join(GROUPINGS)}")
    return MetricsQuery(workspace, group_by, parse_zone(_param(query, "tz")),
                        parse_date("from", _param(query, "from")),
                        parse_date("to", _param(query, "to")))


def _metrics(store: ReadModelStore, query: MetricsQuery) -> dict[str, Any]:
    return compute(query, store.facts(query.workspace_id))


def _conversations(store: ReadModelStore, workspace: str, contact: str | None,
                   status: str | None) -> list[dict[str, Any]]:
    return [row.public() for row in store.conversations(workspace, contact, status)]


async def get_metrics(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{ws}/metrics``: the metrics JSON of CONTRACT §3."""
    query = metrics_query(request.match_info["ws"], request.query)
    store = request.app[CONTEXT].read_models
    return json_response(await asyncio.to_thread(_metrics, store, query))


async def get_conversations(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{ws}/conversations``: the rows of CONTRACT §4, as an array."""
    status = _param(request.query, "status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"status: {status!r} is not one of {', '.join(STATUSES)}")
    store = request.app[CONTEXT].read_models
    rows = await asyncio.to_thread(_conversations, store, request.match_info["ws"],
                                   _param(request.query, "contact"), status)
    return json_response(rows)
