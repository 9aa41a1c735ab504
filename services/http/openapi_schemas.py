"""The component schemas of the OpenAPI document (:mod:`.openapi`): the JSON bodies the
HTTP API answers and takes (``#/components/schemas/NAME``).
"""

from __future__ import annotations

from typing import Any, Final

Schema = dict[str, Any]

# -- schemas -----------------------------------------------------------------------------------

NULLABLE_STRING: Final[Schema] = {"type": ["string", "null"]}
STATS: Final[Schema] = {
    "type": "object", "required": ["count"],
    "properties": {"count": {"type": "integer", "minimum": 0},
                   **{k: {"type": ["number", "null"]} for k in ("avg", "p50", "p90", "min",
                                                               "max")}}}
METRICS_ROW: Final[Schema] = {
    "type": "object", "required": ["key", "opened", "closed", "resolution_seconds"],
    "properties": {"key": NULLABLE_STRING, "opened": {"type": ["integer", "null"]},
                   "closed": {"type": "integer"}, "resolution_seconds": STATS}}
CONVERSATION: Final[Schema] = {
    "type": "object",
    "required": ["conversation_id", "workspace_id", "contact_id", "channel", "status",
                 "opened_at", "closed_at", "opened_by", "closed_by", "assignee_id", "team_id",
                 "resolution_seconds", "messages_received", "messages_sent"],
    "properties": {
        "conversation_id": {"type": "string"}, "workspace_id": {"type": "string"},
        "contact_id": {"type": "string"}, "channel": NULLABLE_STRING,
        "status": {"enum": ["open", "closed"]}, "opened_at": {"type": "string"},
        "closed_at": NULLABLE_STRING, "opened_by": {"type": "string"},
        "closed_by": NULLABLE_STRING, "closed_by_actor": NULLABLE_STRING,
        "assignee_id": NULLABLE_STRING, "team_id": NULLABLE_STRING,
        "category": NULLABLE_STRING, "summary": NULLABLE_STRING,
        "resolution_seconds": {"type": ["number", "null"]},
        "messages_received": {"type": "integer"}, "messages_sent": {"type": "integer"}}}
NULLABLE_INT: Final[Schema] = {"type": ["integer", "null"]}
DEAD_LETTER: Final[Schema] = {
    "type": "object",
    "required": ["id", "received_at", "source", "workspace_id", "event_id", "reason",
                 "partition", "offset", "retry_outcome", "retry_reason", "retried_at",
                 "retry_attempts", "raw"],
    "properties": {
        "id": {"type": "string"}, "received_at": {"type": "string"},
        "source": {"type": "string"}, "workspace_id": NULLABLE_STRING,
        "event_id": NULLABLE_STRING, "reason": {"type": "string"}, "partition": NULLABLE_INT,
        "offset": NULLABLE_INT, "retry_outcome": NULLABLE_STRING,
        "retry_reason": NULLABLE_STRING, "retried_at": NULLABLE_STRING,
        "retry_attempts": {"type": "integer", "minimum": 0}, "raw": {"type": "string"}}}
SCHEMAS: Final[dict[str, Schema]] = {
    "Error": {"type": "object", "required": ["error", "detail"],
              "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}},
    "IngestResult": {
        "type": "object", "required": ["accepted", "invalid", "items"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "invalid": {"type": "integer", "minimum": 0},
            "items": {"type": "array", "items": {
                "type": "object", "required": ["index", "event_id", "status"],
                "properties": {"index": {"type": "integer", "minimum": 0},
                               "event_id": NULLABLE_STRING,
                               "status": {"enum": ["accepted", "invalid"]},
                               "reason": {"type": "string"}}}}}},
    "Metrics": {
        "type": "object", "required": ["workspace_id", "group_by", "tz", "from", "to", "rows",
                                       "total"],
        "properties": {"workspace_id": {"type": "string"}, "group_by": {"type": "string"},
                       "tz": {"type": "string"}, "from": NULLABLE_STRING,
                       "to": NULLABLE_STRING, "rows": {"type": "array", "items": METRICS_ROW},
                       "total": METRICS_ROW}},
    "Conversation": CONVERSATION,
    "ContactEvents": {
        "type": "object", "required": ["workspace_id", "contact_id", "events"],
        "properties": {"workspace_id": {"type": "string"}, "contact_id": {"type": "string"},
                       "events": {"type": "array", "items": {"type": "object"}}}},
    "ConversationEvents": {
        "type": "object", "required": ["conversation", "events"],
        "properties": {"conversation": CONVERSATION,
                       "events": {"type": "array", "items": {"type": "object"}}}},
    "Dashboard": {
        "type": "object", "required": ["workspace_id", "tz", "as_of", "open", "today",
                                       "hourly"],
        "properties": {"workspace_id": {"type": "string"}, "tz": {"type": "string"},
                       "as_of": {"type": "string"}, "open": {"type": "object"},
                       "today": {"type": "object"},
                       "hourly": {"type": "array", "items": {"type": "object"}}}},
    "DeadLetter": DEAD_LETTER,
    "EventOutcome": {
        "type": "object",
        "required": ["workspace_id", "event_id", "outcome", "reason", "domain_events",
                     "dead_letters"],
        "properties": {"workspace_id": {"type": "string"}, "event_id": {"type": "string"},
                       "outcome": {"enum": ["accepted", "rejected", "invalid"]},
                       "reason": NULLABLE_STRING, "contact_id": NULLABLE_STRING,
                       "event_type": NULLABLE_STRING, "occurred_at": NULLABLE_STRING,
                       "domain_events": {"type": "array", "items": {"type": "object"}},
                       "dead_letters": {"type": "array", "items": DEAD_LETTER}}},
    "WorkspaceSettings": {
        "type": "object", "additionalProperties": False,
        "properties": {"timezone": {"type": ["string", "null"]},
                       "business_hours": {"type": ["array", "null"], "items": {
                           "type": "object", "required": ["day", "start", "end"],
                           "properties": {"day": {"enum": ["mon", "tue", "wed", "thu", "fri",
                                                           "sat", "sun"]},
                                          "start": {"type": "string"},
                                          "end": {"type": "string"}}}},
                       "inactivity_timeout_seconds": {"type": ["integer", "null"],
                                                      "minimum": 60}}},
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"enum": ["ok", "unavailable"]}}},
}
