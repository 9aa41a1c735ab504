"""The checked-in JSON Schema files must match the pydantic models."""

from __future__ import annotations

import json

from schemas.generate import OUT, documents, stale


def test_schema_files_are_current() -> None:
    assert stale() == [], "run `make schemas` and commit schemas/json/"


def test_envelope_schema_names_every_required_field() -> None:
    envelope = json.loads((OUT / "gateway-envelope.v1.json").read_text())
    assert set(envelope["required"]) == {
        "event_id", "type", "workspace_id", "contact_id", "occurred_at"}


def test_event_schema_covers_every_event_type() -> None:
    events = documents()["conversation-events.v1.json"]
    names = set(events["discriminator"]["mapping"])
    assert names == {"ConversationOpened", "MessageReceived", "MessageSent",
                     "ConversationAssigned", "ConversationClosed", "ContactMerged",
                     "ContactAbsorbed", "WorkspaceSettingsChanged"}


def test_event_schema_is_version_2_with_the_service_level_fields() -> None:
    defs = documents()["conversation-events.v1.json"]["$defs"]
    assert defs["ConversationOpened"]["properties"]["schema_version"]["const"] == 2
    assert "recontact" in defs["ConversationOpened"]["properties"]
    assert "first_response" in defs["MessageSent"]["properties"]
    assert "inactivity" in defs["ConversationClosed"]["properties"]["closed_by"]["enum"]
