"""What handlers find on the application and on the request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from services.conversation.application.ports import EventStore
from services.http.ports import EventSink
from services.projections.application.ports import ReadModelStore

Realm = Literal["gateway", "analytics", "admin"]
HealthCheck = Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class HttpContext:
    """The collaborators of one app, given to :func:`services.http.app.create_app`."""

    sink: EventSink
    read_models: ReadModelStore
    registry: CollectorRegistry
    health: HealthCheck | None
    ingested_items: Counter
    #: the event store, for timelines (None: timelines answer 503)
    events: EventStore | None = None


CONTEXT = web.AppKey("bonychat.http.context", HttpContext)
#: The workspace the request's bearer token is bound to (set by the auth middleware).
WORKSPACE = web.RequestKey("bonychat.http.workspace", str)


def route_label(request: web.Request) -> str:
    """The matched route's path template (``/v1/workspaces/{ws}/metrics``), or ``unmatched``.

    Used for metric labels and auth realms: bounded, never the raw path.
    """
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
