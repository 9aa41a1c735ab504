"""Operations endpoints: request metrics, ``GET /metrics`` and ``GET /healthz``."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from services.http.context import CONTEXT, HealthCheck, route_label
from services.http.errors import json_response

log = logging.getLogger(__name__)


class GatheredRegistry(CollectorRegistry):
    """A registry whose exposition adds metrics gathered elsewhere (other processes).

    ``GET /metrics`` awaits :meth:`gather` before rendering it.
    """

    async def gather(self) -> None:
        """Fetch what ``collect`` adds to this process's own metrics; nothing here."""


def request_metrics_middleware(registry: CollectorRegistry) -> Middleware:
    """Count requests and time them, per route template, method and status.

    The metric objects are registered on ``registry`` (one set per app), so
    several apps with their own registries can live in one process.
    """
    requests = Counter("bonychat_http_requests", "HTTP requests served",
                       ["route", "method", "status"], registry=registry)
    latency = Histogram("bonychat_http_request_duration_seconds",
                        "Time to answer an HTTP request", ["route", "method"],
                        registry=registry)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        route = route_label(request)
        latency.labels(route, request.method).observe(time.perf_counter() - started)
        requests.labels(route, request.method, str(response.status)).inc()
        return response

    return middleware


class ReadinessCollector(Collector):
    """``bonychat_ready`` (1/0) and ``bonychat_component_ready``, read from the health check
    at each scrape, so alerts see what ``/healthz`` says."""

    def __init__(self, health: HealthCheck) -> None:
        self.health = health

    def collect(self) -> list[GaugeMetricFamily]:
        try:
            info = dict(self.health())
        except Exception:
            info = {"ready": False}
        ready = GaugeMetricFamily("bonychat_ready", "1 when the process is ready "
                                  "(GET /healthz answers 200), else 0",
                                  value=1.0 if info.get("ready", True) else 0.0)
        components = GaugeMetricFamily("bonychat_component_ready", "1 when the component "
                                       "(a service, the stores, http) is ready",
                                       labels=["component"])
        for name, value in sorted(dict(info.get("components") or {}).items()):
            components.add_metric([str(name)], 1.0 if value else 0.0)
        dependencies = GaugeMetricFamily("bonychat_dependency_up", "1 while the dependency "
                                         "(kafka, postgresql) answers the process's probe",
                                         labels=["dependency"])
        for name, value in sorted(dict(info.get("dependencies") or {}).items()):
            dependencies.add_metric([str(name)], 1.0 if value else 0.0)
        return [ready, components, dependencies]


async def prometheus(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition of the app's registry."""
    registry = request.app[CONTEXT].registry
    if isinstance(registry, GatheredRegistry):
        await registry.gather()
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 when ready, 503 when the health check says not ready."""
    check = request.app[CONTEXT].health
    try:
        info = dict(check()) if check is not None else {}
    except Exception as exc:
        log.exception("health check failed")
        info = {"ready": False, "detail": f"health check failed: {type(exc).__name__}"}
    ready = bool(info.get("ready", True))
    info.pop("status", None)
    return json_response({"status": "ok" if ready else "unavailable", **info},
                         status=200 if ready else 503)
