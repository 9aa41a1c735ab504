"""JSON responses and the error middleware: every failure is ``{"error", "detail"}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

#: Stable machine-readable ``error`` codes per HTTP status.
ERROR_CODES: Final[dict[int, str]] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large",
    500: "internal_error", 503: "unavailable",
}
_DROPPED_HEADERS: Final = frozenset({"content-type", "content-length"})


class ApiError(Exception):
    """An expected failure answered as JSON with ``status``."""

    def __init__(self, status: int, detail: str, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def json_response(data: Any, *, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """``data`` serialised with orjson (the CLI's JSON encoder) as ``application/json``."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


def error_response(status: int, detail: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    code = ERROR_CODES.get(status, f"http_{status}")
    return json_response({"error": code, "detail": detail}, status=status, headers=headers)


def _detail_of(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"no such endpoint: {request.method} {request.path}"
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    if exc.status == 413:
        return f"request body exceeds {request.client_max_size} bytes"
    return exc.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`ApiError`, aiohttp's HTTP errors and crashes into JSON errors."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.detail, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k.lower() not in _DROPPED_HEADERS}
        return error_response(exc.status, _detail_of(request, exc), kept)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "unexpected server error; see the server log")
