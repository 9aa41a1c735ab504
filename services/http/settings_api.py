"""``GET`` / ``PUT /v1/workspaces/{ws}/settings`` (CONTRACT §6.1).

``GET`` answers the settings object with defaults filled in (analytics or admin
token); ``PUT`` applies the given keys (``null`` resets one) and answers the
result (admin token). An invalid body is 400 with the reason, and nothing is
stored. The change is an event in the event store, so every runtime's next batch
sees it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from schemas.workspace import SettingsError
from services.conversation.application.ports import EventStore
from services.conversation.application.workspaces import (
    SettingsChange,
    change_settings,
    load_workspace,
)
from services.http.context import CONTEXT
from services.http.errors import ApiError, json_response


def _events(request: web.Request) -> EventStore:
    events = request.app[CONTEXT].events
    if events is None:
        raise ApiError(503, "settings are not available in this process")
    return events


async def get_settings(request: web.Request) -> web.Response:
    events = _events(request)
    workspace = await asyncio.to_thread(load_workspace, events, request.match_info["ws"])
    return json_response(workspace.settings.model_dump(mode="json"))


async def put_settings(request: web.Request) -> web.Response:
    events = _events(request)
    try:
        body: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "settings: must be a JSON object")
    try:
        workspace = await asyncio.to_thread(change_settings, events, request.match_info["ws"],
                                            body, SettingsChange("http"))
    except SettingsError as exc:
        raise ApiError(400, str(exc)) from None
    return json_response(workspace.settings.model_dump(mode="json"))
