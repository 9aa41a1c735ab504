"""The AsyncAPI 3 document of the Kafka topics (CONTRACT §5), built from ``schemas/``.

``schemas/asyncapi.v1.json`` is generated with the JSON Schema files by
``python -m schemas.generate`` and checked current by ``--check`` (``make lint``),
so a gateway or analytics team can generate a client from it. Every message
payload is the JSON Schema of the pydantic models; their ``$defs`` become
``components/schemas`` entries.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import TypeAdapter

from schemas.commands import CommandMessage
from schemas.envelope import GatewayEnvelope
from schemas.events import AnyDomainEvent

Schema = dict[str, Any]
GATEWAY: Final = "bonychat.gateway.events.v1"
DLQ: Final = "bonychat.gateway.events.dlq.v1"
COMMANDS: Final = "bonychat.conversation.commands.v1"
EVENTS: Final = "bonychat.conversation.events.v1"
KEY: Final[Schema] = {
    "type": "string", "description": "workspace_id:contact_id (UTF-8): one contact's records "
                                     "share a partition and keep their order"}


def _hoist(schema: Schema, into: dict[str, Schema]) -> Schema:
    """Move ``$defs`` into ``into`` (components/schemas) and point the references there."""
    defs = schema.pop("$defs", {})
    for name, definition in defs.items():
        if name in into and into[name] != _relinked(definition):
            raise ValueError(f"two different schemas are named {name}")
        into[name] = _relinked(definition)
    relinked: Schema = _relinked(schema)
    return relinked


def _relinked(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/")
                    if isinstance(v, str) and k == "$ref" else _relinked(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_relinked(v) for v in node]
    if isinstance(node, str) and node.startswith("#/$defs/"):  # discriminator mappings
        return node.replace("#/$defs/", "#/components/schemas/")
    return node


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/{kind}/{name}"}


def _headers(**names: str) -> Schema:
    return {"type": "object", "properties": {
        name: {"type": "string", "description": text} for name, text in names.items()}}


def document() -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document."""
    schemas: dict[str, Schema] = {}
    envelope = _hoist(GatewayEnvelope.model_json_schema(), schemas)
    schemas["GatewayEnvelope"] = envelope
    events = _hoist(TypeAdapter(AnyDomainEvent).json_schema(), schemas)
    schemas["ConversationEvent"] = events
    schemas["CommandMessage"] = _hoist(CommandMessage.model_json_schema(), schemas)
    event_names = [ref["$ref"].rsplit("/", 1)[1] for ref in events["oneOf"]]
    kafka_key = {"kafka": {"key": KEY, "bindingVersion": "0.5.0"}}
    messages: dict[str, Schema] = {
        "GatewayEnvelope": {
            "name": "GatewayEnvelope", "title": "Gateway event envelope v1 (CONTRACT section 1)",
            "contentType": "application/json", "payload": _ref("components/schemas",
                                                               "GatewayEnvelope"),
            "description": "Per-type rules (actor types, channel, data) are those of "
                           "CONTRACT section 2; an envelope breaking any rule goes to the DLQ.",
            "bindings": kafka_key},
        "DeadLetter": {
            "name": "DeadLetter", "title": "An input that is not a valid envelope",
            "contentType": "application/octet-stream",
            "payload": {"type": "string", "description": "the input's bytes as they came"},
            "headers": _headers(
                reason="why it is invalid (at most 2,000 characters)",
                source="kafka (from the gateway topic) or http (POST /v1/events)",
                original_topic="kafka source: the topic it was read from",
                original_partition="kafka source: its partition",
                original_offset="kafka source: its offset"),
            "bindings": {"kafka": {"key": {"type": "string",
                                           "description": "the input's key, if it had one"},
                                   "bindingVersion": "0.5.0"}}},
        "ContactCommand": {
            "name": "ContactCommand", "title": "Internal: one command to a contact aggregate",
            "contentType": "application/json",
            "payload": _ref("components/schemas", "CommandMessage"), "bindings": kafka_key},
    }
    for name in event_names:
        messages[name] = {
            "name": name, "title": schemas[name].get("title", name),
            "contentType": "application/json", "payload": _ref("components/schemas", name),
            "headers": _headers(event_id="the event's stable unique id",
                                event_type=f"{name}"),
            "bindings": kafka_key}
    channels = {
        "gatewayEvents": {"address": GATEWAY, "title": "Gateway events",
                          "messages": {"GatewayEnvelope": _ref("components/messages",
                                                               "GatewayEnvelope")}},
        "gatewayDeadLetters": {"address": DLQ, "title": "Invalid gateway input",
                               "messages": {"DeadLetter": _ref("components/messages",
                                                               "DeadLetter")}},
        "conversationCommands": {"address": COMMANDS, "title": "Commands (internal)",
                                 "messages": {"ContactCommand": _ref("components/messages",
                                                                     "ContactCommand")}},
        "conversationEvents": {
            "address": EVENTS, "title": "Conversation domain events",
            "description": "Every stored domain event, at least once (consumers de-duplicate "
                           "by event_id), in order per contact.",
            "messages": {name: _ref("components/messages", name) for name in event_names}},
    }

    def operation(action: str, channel: str, summary: str) -> Schema:
        names = channels[channel]["messages"]
        return {"action": action, "summary": summary, "channel": _ref("channels", channel),
                "messages": [_ref(f"channels/{channel}/messages", n) for n in names]}

    return {
        "asyncapi": "3.0.0",
        "info": {"title": "BonyChat conversation events: Kafka topics", "version": "1",
                 "description": "CONTRACT section 5. Topic names get .SUFFIX appended when "
                                "BONYCHAT_TOPIC_SUFFIX is set."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "localhost:9092", "protocol": "kafka",
                              "description": "make infra-up's broker (BONYCHAT_KAFKA_BOOTSTRAP)"}},
        "channels": channels,
        "operations": {
            "publishGatewayEvent": operation("send", "gatewayEvents",
                                             "A gateway publishes an envelope"),
            "receiveDeadLetters": operation("receive", "gatewayDeadLetters",
                                            "Operators read invalid input"),
            "receiveConversationEvents": operation("receive", "conversationEvents",
                                                   "Analytics consumers read domain events"),
            "sendCommands": operation("send", "conversationCommands",
                                      "Ingest sends commands (internal)"),
            "receiveCommands": operation("receive", "conversationCommands",
                                         "The conversation service reads commands (internal)"),
        },
        "components": {"schemas": schemas, "messages": messages},
    }
