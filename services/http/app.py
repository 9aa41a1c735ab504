"""The composition root of the HTTP surface (CONTRACT §5)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter

from services.conversation.application.ports import EventStore
from services.http.auth import auth_middleware
from services.http.browse import list_conversations
from services.http.context import CONTEXT, HealthCheck, HttpContext, Realm
from services.http.dashboard import get_dashboard
from services.http.errors import error_middleware
from services.http.limits import MAX_BODY_BYTES
from services.http.live import LIVE, LiveHub, get_live
from services.http.openapi import openapi_json
from services.http.operators import get_dead_letters, get_event_outcome
from services.http.pages import add_pages
from services.http.ports import EventSink
from services.http.post_events import expect_continue, post_events
from services.http.queries import get_metrics
from services.http.settings_api import get_settings, put_settings
from services.http.telemetry import (
    ReadinessCollector,
    healthz,
    prometheus,
    request_metrics_middleware,
)
from services.http.timeline import get_contact_events, get_conversation_events
from services.projections.application.ports import ReadModelStore
from services.settings import Settings

log = logging.getLogger(__name__)

#: (method, path template, handler, realm of the token it needs or None for open).
ROUTES: Final[tuple[tuple[str, str, Handler, Realm | None], ...]] = (
    ("POST", "/v1/events", post_events, "gateway"),
    ("GET", "/v1/workspaces/{ws}/metrics", get_metrics, "analytics"),
    ("GET", "/v1/workspaces/{ws}/conversations", list_conversations, "analytics"),
    ("GET", "/v1/workspaces/{ws}/conversations/{conversation_id}/events",
     get_conversation_events, "analytics"),
    ("GET", "/v1/workspaces/{ws}/contacts/{contact}/events", get_contact_events, "analytics"),
    ("GET", "/v1/workspaces/{ws}/dashboard", get_dashboard, "analytics"),
    ("GET", "/v1/workspaces/{ws}/live", get_live, "analytics"),
    ("GET", "/v1/workspaces/{ws}/events/{event_id}", get_event_outcome, "analytics"),
    ("GET", "/v1/workspaces/{ws}/dead-letters", get_dead_letters, "analytics"),
    # an admin token may read the settings too (auth.ALSO_ACCEPTED)
    ("GET", "/v1/workspaces/{ws}/settings", get_settings, "analytics"),
    ("PUT", "/v1/workspaces/{ws}/settings", put_settings, "admin"),
    ("GET", "/metrics", prometheus, None),
    ("GET", "/healthz", healthz, None),
    ("GET", "/openapi.json", openapi_json, None),  # document each route in openapi.py
)


def create_app(*, settings: Settings, sink: EventSink, read_models: ReadModelStore,
               registry: CollectorRegistry,
               health: HealthCheck | None = None, events: EventStore | None = None,
               live: LiveHub | None = None) -> web.Application:
    """Build the aiohttp application; nothing is started or connected here.

    Tokens are read from ``settings`` once, now (a token file is not re-read).
    ``health`` must answer quickly without blocking; a ``"ready": False`` entry
    makes ``/healthz`` answer 503. Request metrics go to ``registry``.
    ``events`` serves timelines; ``live`` is fed by the runtime (a hub that is
    never fed keeps live streams open but silent).
    """
    tokens: dict[Realm, dict[str, str]] = {
        "gateway": settings.tokens("gateway"), "analytics": settings.tokens("analytics"),
        "admin": settings.tokens("admin")}
    for realm, table in tokens.items():
        if not table:
            log.warning("no %s tokens configured: every %s request will be refused (401)",
                        realm, realm)
    realms = {(method, path): realm for method, path, _, realm in ROUTES if realm is not None}
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[request_metrics_middleware(registry), error_middleware,
                     auth_middleware(tokens, realms)],
    )
    app[CONTEXT] = HttpContext(
        sink=sink, read_models=read_models, registry=registry, health=health,
        ingested_items=Counter("bonychat_http_ingested_items",
                               "Items received by POST /v1/events, by validity",
                               ["status"], registry=registry),
        events=events,
    )
    if health is not None:
        registry.register(ReadinessCollector(health))
    hub = live if live is not None else LiveHub()
    app[LIVE] = hub
    app.on_startup.append(lambda _: _bind(hub))
    app.on_shutdown.append(lambda _: _close(hub))
    for method, path, handler, _ in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # HEAD too, for probes
        elif method == "PUT":
            app.router.add_put(path, handler)
        else:  # POST /v1/events
            app.router.add_route(method, path, handler, expect_handler=expect_continue)
    add_pages(app)
    return app


async def _bind(hub: LiveHub) -> None:
    hub.bind(asyncio.get_running_loop())


async def _close(hub: LiveHub) -> None:
    hub.closed.set()  # ends the live streams, so shutdown does not wait for them
