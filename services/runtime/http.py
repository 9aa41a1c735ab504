"""Start the HTTP app of :mod:`services.http` on an aiohttp ``AppRunner``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from services.composition import Stores
from services.runtime.observability import Health, RuntimeMetrics
from services.settings import Settings

log = logging.getLogger("bonychat.serve")


async def start_http(settings: Settings, sink: Any, stores: Stores | None,
                     metrics: RuntimeMetrics, health: Health) -> web.AppRunner | None:
    """Serve the API on ``settings.http_host:http_port`` (port 0 = any free port).

    Logs ``listening on http://HOST:PORT`` with the bound port once it accepts.
    """
    health.expect("http")
    try:
        from services.http.app import create_app
    except ImportError as exc:  # the HTTP layer is optional for the stream services
        log.warning("HTTP layer unavailable (%s); serving no HTTP", exc)
        health.set_ready("http")
        return None
    assert stores is not None and sink is not None
    from services.http.live import LiveHub

    hub = LiveHub()
    app = create_app(settings=settings, sink=sink, read_models=stores.read_models,
                     registry=metrics.registry, health=health, events=stores.events, live=hub)
    feed_live(app, hub, settings, sink, stores)
    await attach_operator_queries(app, settings)
    from services.http.limits import SERVER_OPTIONS

    runner = web.AppRunner(app, access_log=None, handle_signals=False, **SERVER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    host, port = runner.addresses[0][:2]
    health.set_ready("http")
    log.info(f"listening on http://{host}:{port}", extra={"host": host, "port": port})
    return runner


async def attach_operator_queries(app: web.Application, settings: Settings) -> None:
    """Serve ``/events/{event_id}`` and ``/dead-letters`` (503 if the store cannot be opened)."""
    from services.composition import StorageUnavailable
    from services.composition.dead_letters import open_operations
    from services.http.operators import attach_operations

    try:
        operations = await asyncio.to_thread(open_operations, settings)
    except StorageUnavailable as exc:
        log.warning("operator queries unavailable: %s", exc)
        return
    attach_operations(app, operations)


def feed_live(app: web.Application, hub: Any, settings: Settings, sink: Any,
              stores: Stores) -> None:
    """Who tells the dashboards' live streams that rows changed.

    Embedded: the sink, after each request is processed and projected. Kafka
    runtime: PostgreSQL ``NOTIFY`` from the read model's commits (or polling its
    position when the read model is SQLite).
    """
    from functools import partial

    from services.http.live import feed_in_background, listen_projected, poll_projected
    from services.runtime.sinks import EmbeddedSink

    if isinstance(sink, EmbeddedSink):
        sink.on_processed = hub.publish
    elif settings.is_postgres:
        from services.composition.postgres import parse_url

        conninfo = dict(parse_url(settings.database_url).params)
        feed_in_background(app, partial(listen_projected, hub, conninfo))
    else:
        feed_in_background(app, partial(poll_projected, hub, stores.read_models))
