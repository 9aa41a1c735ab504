"""Timelines straight from the event store: why a conversation is what it is.

- ``GET /v1/workspaces/{ws}/contacts/{contact}/events``: every domain event of
  the contact's aggregate, in order (its conversations, assignments, messages,
  closings, and its merge into another contact).
- ``GET /v1/workspaces/{ws}/conversations/{conversation_id}/events``: the
  conversation's row and the events of its contact from its opening to its
  closing, including a merge that closed it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from schemas.events import ConversationClosed, DomainEvent
from services.conversation.application.ports import EventStore
from services.conversation.domain.contact import aggregate_id
from services.http.context import CONTEXT
from services.http.errors import ApiError, json_response


def event_json(event: DomainEvent) -> dict[str, Any]:
    """A domain event as its JSON document (the schema of ``schemas/``)."""
    return event.model_dump(mode="json")


def _events_store(request: web.Request) -> EventStore:
    events = request.app[CONTEXT].events
    if events is None:
        raise ApiError(503, "this server has no event store to read timelines from")
    return events


def conversation_events(events: list[DomainEvent], conversation_id: str) -> list[DomainEvent]:
    """The events of one conversation, with the contact's events between them (a merge)."""
    versions = [e.aggregate_version for e in events
                if getattr(e, "conversation_id", None) == conversation_id]
    if not versions:
        return []
    first, last = min(versions), max(versions)
    closed = any(isinstance(e, ConversationClosed) and e.conversation_id == conversation_id
                 for e in events)
    if closed:  # a merge records ContactMerged right after the closing it caused
        last += 1
    return [e for e in events if first <= e.aggregate_version <= last
            and getattr(e, "conversation_id", conversation_id) == conversation_id]


async def get_contact_events(request: web.Request) -> web.Response:
    """The domain events of one contact, oldest first."""
    workspace, contact = request.match_info["ws"], request.match_info["contact"]
    store = _events_store(request)
    events = await asyncio.to_thread(store.load, aggregate_id(workspace, contact))
    return json_response({"workspace_id": workspace, "contact_id": contact,
                          "events": [event_json(e) for e in events]})


async def get_conversation_events(request: web.Request) -> web.Response:
    """One conversation's row and its events from the event store; 404 if unknown."""
    workspace, wanted = request.match_info["ws"], request.match_info["conversation_id"]
    context = request.app[CONTEXT]
    store = _events_store(request)
    rows = await asyncio.to_thread(context.read_models.load_rows, [wanted])
    row = rows.get(wanted)
    if row is None or row.workspace_id != workspace:
        raise ApiError(404, f"no conversation {wanted!r} in workspace {workspace!r}")
    events = await asyncio.to_thread(store.load, aggregate_id(workspace, row.contact_id))
    return json_response({"conversation": row.public(),
                          "events": [event_json(e) for e in conversation_events(events, wanted)]})
