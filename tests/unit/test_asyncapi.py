"""The AsyncAPI document of the topics: current, consistent, and true of real records."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import orjson

from schemas.asyncapi import document
from schemas.events import EVENT_CLASSES, encode_event
from schemas.generate import ASYNCAPI, render, stale
from services.conversation.application.workspaces import SettingsChange, change_settings
from services.conversation.domain.contact import aggregate_id
from services.conversation.domain.workspace import settings_id
from services.ingest.domain.normalise import parse
from services.runtime import topics
from services.runtime.sinks import encode_command

from .harness import World, ev


def test_the_checked_in_file_is_current() -> None:
    assert "asyncapi.v1.json" not in stale(), "run `make schemas` and commit it"
    assert ASYNCAPI.read_text(encoding="utf-8") == render(document())


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for key in ref.removeprefix("#/").split("/"):
        assert key in node, f"unresolvable {ref}"
        node = node[key]
    return node


def test_every_reference_resolves_and_operations_use_their_channel() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    refs = [part.split('"')[0] for part in json.dumps(doc).split('"$ref": "')[1:]]
    assert refs
    for ref in refs:
        resolve(doc, ref)
    for name, op in doc["operations"].items():
        channel = op["channel"]["$ref"]
        for message in op["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), name


def test_channels_are_the_runtime_topics() -> None:
    addresses = {c["address"] for c in document()["channels"].values()}
    assert addresses == set(topics.Topics().all())


def test_every_domain_event_type_is_a_message_of_the_events_topic() -> None:
    channel = document()["channels"]["conversationEvents"]
    assert set(channel["messages"]) == {cls.__name__ for cls in EVENT_CLASSES.values()}


def validator(doc: dict[str, Any], schema_name: str) -> Any:
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{schema_name}",
                                        "components": doc["components"]})


def test_real_records_validate_against_their_message_payloads() -> None:
    doc = document()
    world = World()
    story = [ev("message.received", "c1", 0), ev("conversation.assign", "c1", 1,
                                                  data={"assignee_id": "a1"}),
             ev("message.sent", "c1", 2), ev("conversation.close", "c1", 3),
             ev("message.received", "c2", 4), ev("contact.merge", "c1", 5,
                                                  data={"secondary_contact_id": "c2"})]
    world.send(*story)
    change_settings(world.events, "ws1", {"inactivity_timeout_seconds": 3600},
                    SettingsChange("test"))
    events = [*world.events.load(aggregate_id("ws1", "c1")),
              *world.events.load(aggregate_id("ws1", "c2")),
              *world.events.load(settings_id("ws1"))]
    kinds = set()
    for event in events:
        name = type(event).__name__
        value = orjson.loads(encode_event(event))
        assert validator(doc, name).is_valid(value), (name, value)
        assert validator(doc, "ConversationEvent").is_valid(value)
        kinds.add(name)
    assert kinds == {cls.__name__ for cls in EVENT_CLASSES.values()}
    for envelope in story:
        assert validator(doc, "GatewayEnvelope").is_valid(envelope)
        command = parse(orjson.dumps(envelope))
        assert validator(doc, "CommandMessage").is_valid(
            orjson.loads(encode_command(command)))  # type: ignore[arg-type]
    broken = {**story[0], "occurred_at": 5}
    assert not validator(doc, "GatewayEnvelope").is_valid(broken)
