"""Stored events of an older schema version are upgraded when read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from schemas.events import CURRENT_VERSION, UPCASTERS, ConversationOpened, decode_event


@pytest.fixture
def v0_upcaster() -> Iterator[None]:
    def rename_channel(payload: dict[str, Any]) -> dict[str, Any]:
        payload = dict(payload)
        payload["channel_type"] = payload.pop("channel", None)
        return payload

    UPCASTERS[("ConversationOpened", 0)] = rename_channel
    yield
    del UPCASTERS[("ConversationOpened", 0)]


def _v0_payload() -> bytes:
    return orjson.dumps({
        "schema_version": 0, "event_type": "ConversationOpened", "event_id": "e",
        "workspace_id": "ws", "contact_id": "c", "aggregate_version": 1,
        "occurred_at": "2026-11-24T10:00:00Z", "source_event_id": "g1",
        "conversation_id": "conv", "opened_by": "contact", "channel": "viber"})


def test_old_version_is_upcast_on_read(v0_upcaster: None) -> None:
    event = decode_event(_v0_payload())
    assert isinstance(event, ConversationOpened)
    assert event.channel_type == "viber"
    assert event.schema_version == CURRENT_VERSION


def test_missing_upcaster_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no upcaster for ConversationOpened v0"):
        decode_event(_v0_payload())
