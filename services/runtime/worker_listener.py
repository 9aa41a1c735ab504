"""A worker's small listener on 127.0.0.1: ``GET /metrics`` and ``GET /healthz``, nothing else.

Only the parent ``serve`` asks it (its ``/metrics`` merge and its health probe), so
it is plain asyncio: one request per connection, answered and closed. A worker
therefore never loads aiohttp, which was ~0.1 s of CPU of each worker's start-up
(issue 13; its import builds two TLS contexts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from services.runtime.observability import Health, RuntimeMetrics

#: a request's head larger than this, or slower than READ_SECONDS, is dropped
MAX_HEAD = 16_384
READ_SECONDS = 10.0
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class WorkerListener:
    """The listener; :meth:`cleanup` closes it (the name ``serve`` tears an app down by)."""

    def __init__(self, metrics: RuntimeMetrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health
        self.server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        return int(self.server.sockets[0].getsockname()[1])

    async def cleanup(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for one request."""
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": self._metrics, "/healthz": self._healthz}
        route = routes.get(path.split("?", 1)[0])
        if route is None:
            return _error(404, "not_found", f"no route {path}")
        if method not in ("GET", "HEAD"):
            return _error(405, "method_not_allowed", f"{method} not allowed")
        return route()

    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)

    def _healthz(self) -> tuple[int, str, bytes]:
        info = self.health()
        return 200 if info["ready"] else 503, "application/json", orjson.dumps(info)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                return
            status, kind, body = self.answer(parts[0], parts[1])
            writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode("latin-1") + (b"" if parts[0] == "HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _error(status: int, code: str, detail: str) -> tuple[int, str, bytes]:
    return status, "application/json", orjson.dumps({"error": code, "detail": detail})
