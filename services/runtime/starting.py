"""Start-up while Kafka or PostgreSQL is still down: wait, say so, never exit.

``bonychat serve`` needs its database (tables created, stores opened) and, in
the Kafka runtime, a started producer before the services and the HTTP app can
run. When a dependency is unreachable at that moment (a *transient* failure,
:func:`.retry.is_transient`), the process does not exit: it records the
dependency as down in :class:`~.observability.Health`, serves a minimal HTTP
app on the configured port (``GET /healthz`` 503 with the reason, ``GET
/metrics``, every other request 503 with ``Retry-After``), and tries again with
backoff until it succeeds or a stop signal arrives. Then the minimal app gives
the port to the real one. A permanent failure (a bad setting, a bug) still ends
the start-up with an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import Backoff, describe, is_transient

if TYPE_CHECKING:  # loaded only when a dependency is down (a worker never loads aiohttp)
    from aiohttp import web

log = logging.getLogger("bonychat.serve")
T = TypeVar("T")
RETRY_AFTER = "1"


class Unavailable(Exception):
    """A dependency failed at start-up for a reason waiting will not fix."""


class StartingHttp:
    """The port's answer while the process waits for its dependencies."""

    def __init__(self, health: Health, metrics: RuntimeMetrics) -> None:
        self.health = health
        self.metrics = metrics
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        from aiohttp import web

        from services.http.limits import SERVER_OPTIONS

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, **SERVER_OPTIONS)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("waiting for dependencies; /healthz answers 503 on port %s", self.port,
                 extra={"port": self.port})

    async def _answer(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST
        from prometheus_client.exposition import generate_latest

        from services.http.errors import error_response, json_response

        if request.path == "/healthz":
            info = self.health()
            return json_response({"status": "unavailable", **info, "ready": False,
                                  "starting": True}, status=503,
                                 headers={"Retry-After": RETRY_AFTER})
        if request.path == "/metrics" and request.method == "GET":
            return web.Response(body=generate_latest(self.metrics.registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})
        down = ", ".join(sorted(self.health().get("down", {}))) or "a dependency"
        return error_response(503, f"starting: waiting for {down}",
                              headers={"Retry-After": RETRY_AFTER})

    async def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()


class Startup:
    """Runs start-up steps, waiting out a dependency that is down (see module doc)."""

    def __init__(self, health: Health, metrics: RuntimeMetrics, stop: asyncio.Event, *,
                 host: str, port: int, backoff: Backoff | None = None,
                 before_waiting: Callable[[], Awaitable[None]] | None = None) -> None:
        self.health = health
        #: run once, when a first dependency turns out to be down (before waiting for it)
        self.before_waiting = before_waiting
        self.stop = stop
        self.host = host
        self.port = port
        self.backoff = backoff if backoff is not None else Backoff()
        self.http = StartingHttp(health, metrics)

    @property
    def bound_port(self) -> int:
        """The port the real app must take (the one chosen if ``port`` was 0)."""
        return self.http.port if self.http.port is not None and self.port == 0 else self.port

    async def step(self, dependency: str, attempt: Callable[[], Awaitable[T]]) -> T | None:
        """``await attempt()`` until it succeeds; None if stopped while waiting.

        Raises :class:`Unavailable` for a failure that is not transient.
        """
        self.backoff.reset()
        while True:
            try:
                result = await attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise Unavailable(str(exc)) from exc
                reason = describe(exc)
                if self.health.dependency_up(dependency):
                    log.warning("%s unreachable at start-up; waiting for it", dependency,
                                extra={"dependency": dependency, "error": reason})
                self.health.set_dependency(dependency, False, reason)
                before, self.before_waiting = self.before_waiting, None
                if before is not None:
                    await before()
                if self.http.runner is None:
                    await self.http.start(self.host, self.port)
                if not await self.backoff.sleep(self.stop):
                    return None
                continue
            if not self.health.dependency_up(dependency):
                log.info("%s reachable; starting", dependency, extra={"dependency": dependency})
            self.health.set_dependency(dependency, True)
            return result

    async def done(self) -> None:
        """Free the port for the real app."""
        await self.http.stop()
