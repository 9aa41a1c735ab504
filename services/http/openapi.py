"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

**Adding a route**: add it to ``ROUTES`` in ``app.py`` and its operation to
:data:`OPERATIONS` below, built with :func:`operation` (summary, realm, query
parameters, the success answer, the error statuses it can give); a new body
schema goes in :mod:`.openapi_schemas`.
``tests/unit/test_openapi.py`` fails while a route of the app has no operation
here or an operation names no route, and ``tests/e2e/test_openapi_fuzz.py``
(schemathesis) checks that answers conform. Path parameters are taken from the
template (``{ws}`` is a workspace id, any other a non-empty string).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Final

import orjson
from aiohttp import web

from services.http.errors import ERROR_CODES
from services.http.limits import MAX_BATCH_ITEMS, MAX_BODY_BYTES
from services.http.openapi_schemas import SCHEMAS, Schema

__all__ = ["OPERATIONS", "SCHEMAS", "Schema", "document", "openapi_json", "operation"]


# -- building blocks ---------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def query(name: str, description: str, schema: Schema | None = None) -> Schema:
    """An optional query parameter (an empty value counts as absent)."""
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


GROUP_BY: Final = enum("day", "week", "month", "channel", "opened_by", "closed_by", "assignee",
                       "team")
DATE: Final[Schema] = {"type": "string", "format": "date"}
TZ: Final = query("tz", "IANA time zone name; default UTC")
FROM_TO: Final = (query("from", "first local date YYYY-MM-DD (inclusive)", DATE),
                  query("to", "last local date YYYY-MM-DD (inclusive)", DATE))
FORMAT: Final = query("format", "json (default) or csv", enum("json", "csv"))
ERROR_TEXT: Final[dict[int, str]] = {
    400: "bad request: malformed JSON, a bad parameter (detail names it)",
    401: "no token, an unknown token or a token of another realm",
    403: "the request is about another workspace than the token's",
    404: "not found",
    408: "the request body did not arrive in time",
    413: f"body over {MAX_BODY_BYTES} bytes or an array of more than {MAX_BATCH_ITEMS} items",
    503: "not available now; retry later",
}
REALM_SCHEMES: Final = {"gateway": "gatewayToken", "analytics": "analyticsToken",
                        "admin": "adminToken"}


def operation(summary: str, *, ok: tuple[int, str, Mapping[str, Any]],
              realm: str | None = None, params: Iterable[Schema] = (),
              errors: Iterable[int] = (), body: Schema | None = None,
              headers: Mapping[str, Schema] | None = None,
              description: str | None = None) -> dict[str, Any]:
    """One operation: ``ok`` = (status, description, content by media type)."""
    status, text, content = ok
    success: dict[str, Any] = {"description": text}
    if content:
        success["content"] = dict(content)
    if headers:
        success["headers"] = {k: {"schema": v} for k, v in headers.items()}
    responses: dict[str, Any] = {str(status): success}
    codes = set(errors) | ({401} if realm else set())
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    result: dict[str, Any] = {"summary": summary, "parameters": list(params),
                              "responses": responses}
    if description:
        result["description"] = description
    if realm is not None:
        result["security"] = [{REALM_SCHEMES[realm]: []}]
    if body is not None:
        result["requestBody"] = {"required": True, "content": json_content(body)}
    return result


EVENTS_BODY: Final[Schema] = {
    "description": "one gateway envelope (CONTRACT section 1) or a non-empty array of them; "
                   "items that are not valid envelopes are accepted as invalid (dead letters)",
    "oneOf": [{"type": "object"},
              {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ITEMS}]}
CSV: Final = {"text/csv": {"schema": {"type": "string"}}}
ANALYTICS_ERRORS: Final = (400, 403)

#: (method, path template) -> operation; one entry per route of the app.
OPERATIONS: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("POST", "/v1/events"): operation(
        "Post one gateway envelope or a batch", realm="gateway",
        body=EVENTS_BODY, errors=(400, 403, 408, 413, 503),
        ok=(202, "every item with its status, in request order",
            json_content(ref("IngestResult")))),
    ("GET", "/v1/workspaces/{ws}/metrics"): operation(
        "Metrics of CONTRACT section 3", realm="analytics", errors=ANALYTICS_ERRORS,
        params=(query("group_by", "grouping; default day", GROUP_BY), *FROM_TO, TZ, FORMAT),
        ok=(200, "the metrics JSON (or its CSV)", {**json_content(ref("Metrics")), **CSV})),
    ("GET", "/v1/workspaces/{ws}/conversations"): operation(
        "Conversation rows of CONTRACT section 4", realm="analytics", errors=ANALYTICS_ERRORS,
        params=(query("contact", "only conversations of this contact"),
                query("status", "open or closed", enum("open", "closed")),
                *(query(n, f"filter on {n} (a metrics dimension key)")
                  for n in ("channel", "assignee", "team", "opened_by", "closed_by")),
                query("measure", "the conversations behind one metrics number",
                      enum("opened", "closed", "resolved")),
                query("group_by", "with key: one bucket of the metrics", GROUP_BY),
                query("key", "the bucket key (with group_by)"), *FROM_TO, TZ,
                query("limit", "page size", {"type": "integer", "minimum": 1,
                                             "maximum": 1000}),
                query("offset", "rows to skip", {"type": "integer", "minimum": 0}), FORMAT),
        headers={"X-Total-Count": {"type": "string"}},
        ok=(200, "the rows (or their CSV)",
            {**json_content({"type": "array", "items": ref("Conversation")}), **CSV})),
    ("GET", "/v1/workspaces/{ws}/conversations/{conversation_id}/events"): operation(
        "One conversation's row and its domain events", realm="analytics",
        errors=(*ANALYTICS_ERRORS, 404, 503),
        ok=(200, "row and events", json_content(ref("ConversationEvents")))),
    ("GET", "/v1/workspaces/{ws}/contacts/{contact}/events"): operation(
        "Every domain event of one contact", realm="analytics",
        errors=(*ANALYTICS_ERRORS, 503),
        ok=(200, "the contact's events, oldest first", json_content(ref("ContactEvents")))),
    ("GET", "/v1/workspaces/{ws}/dashboard"): operation(
        "What the Dashboard page shows", realm="analytics", errors=ANALYTICS_ERRORS,
        params=(TZ, query("now", "RFC 3339 timestamp fixing the clock")),
        ok=(200, "open conversations and today's numbers", json_content(ref("Dashboard")))),
    ("GET", "/v1/workspaces/{ws}/live"): operation(
        "Server-sent events when the workspace's read models change", realm="analytics",
        errors=ANALYTICS_ERRORS,
        params=(query("dashboard", "1: push the Dashboard summary (event 'dashboard') "
                      "instead of 'changed'", enum("0", "1")), TZ),
        ok=(200, "an endless text/event-stream", {"text/event-stream": {
            "schema": {"type": "string"}}})),
    ("GET", "/v1/workspaces/{ws}/events/{event_id}"): operation(
        "What became of one gateway event", realm="analytics",
        errors=(*ANALYTICS_ERRORS, 404, 503),
        ok=(200, "its outcome, the domain events it caused and its dead letters",
            json_content(ref("EventOutcome")))),
    ("GET", "/v1/workspaces/{ws}/dead-letters"): operation(
        "The workspace's dead letters, oldest first", realm="analytics",
        errors=(*ANALYTICS_ERRORS, 503),
        params=(query("since", "received on or after: YYYY-MM-DD (UTC) or RFC 3339"),
                query("source", "where it came from",
                      enum("file", "http", "kafka", "commands"))),
        ok=(200, "the dead letters", json_content({"type": "array",
                                                   "items": ref("DeadLetter")}))),
    ("GET", "/v1/workspaces/{ws}/settings"): operation(
        "Workspace settings of CONTRACT section 6.1, defaults filled in", realm="analytics",
        description="an admin token may read them too", errors=(403, 503),
        ok=(200, "the settings object", json_content(ref("WorkspaceSettings")))),
    ("PUT", "/v1/workspaces/{ws}/settings"): operation(
        "Change workspace settings: given keys replace, null resets one", realm="admin",
        body=ref("WorkspaceSettings"), errors=(400, 403, 503),
        ok=(200, "the settings now in force", json_content(ref("WorkspaceSettings")))),
    ("GET", "/metrics"): operation(
        "Prometheus metrics of the process",
        ok=(200, "Prometheus text exposition", {"text/plain": {"schema": {"type": "string"}}})),
    ("GET", "/healthz"): operation(
        "Readiness and liveness", errors=(503,),
        ok=(200, "ready", json_content(ref("Health")))),
    ("GET", "/openapi.json"): operation(
        "This document", ok=(200, "OpenAPI 3.1", json_content({"type": "object"}))),
    ("GET", "/"): operation("Redirect to the Dashboard page", ok=(302, "to /dashboard", {})),
    ("GET", "/dashboard"): operation(
        "The Dashboard page", ok=(200, "HTML", {"text/html": {"schema": {"type": "string"}}})),
    ("GET", "/reports"): operation(
        "The Reports page", ok=(200, "HTML", {"text/html": {"schema": {"type": "string"}}})),
}

_PATH_PARAM = re.compile(r"\{([^}]+)\}")


def path_parameters(path: str) -> list[Schema]:
    params = []
    for name in _PATH_PARAM.findall(path):
        schema: Schema = ({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"} if name == "ws"
                          else {"type": "string", "minLength": 1})
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def document(operations: Mapping[tuple[str, str], dict[str, Any]] = OPERATIONS
             ) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in sorted(operations.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        entry = {**op, "parameters": [*path_parameters(path), *op["parameters"]]}
        if not entry["parameters"]:
            del entry["parameters"]
        paths.setdefault(path, {})[method.lower()] = entry
    responses = {f"E{code}": {"description": text, "content": json_content(ref("Error"))}
                 for code, text in ERROR_TEXT.items()}
    responses["E401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    responses["E503"]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "BonyChat conversation events", "version": "1",
                 "description": "CONTRACT section 5; see docs/http.md. Errors are "
                                "{error, detail} with error one of "
                                f"{sorted(set(ERROR_CODES.values()))}."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS, "responses": responses,
            "securitySchemes": {
                "gatewayToken": {"type": "http", "scheme": "bearer",
                                 "description": "a gateway token (BONYCHAT_GATEWAY_TOKENS)"},
                "analyticsToken": {"type": "http", "scheme": "bearer",
                                   "description": "an analytics token "
                                                  "(BONYCHAT_ANALYTICS_TOKENS)"},
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "an admin token (BONYCHAT_ADMIN_TOKENS)"}}},
    }


@cache
def _rendered() -> bytes:
    return orjson.dumps(document())


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: this module's document."""
    return web.Response(body=_rendered(), content_type="application/json")
