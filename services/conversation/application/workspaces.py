"""Reading and changing a workspace's settings through the event store (CONTRACT §6.1).

The CLI (``bonychat workspace``), the HTTP API and the batch processor all go
through here, so a change is one ``WorkspaceSettingsChanged`` event committed
like any other (version-checked: two concurrent changes cannot both win).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.conversation.application.ports import ConcurrencyConflict, EventStore
from services.conversation.domain.sources import Expiry
from services.conversation.domain.workspace import Workspace, settings_id

ATTEMPTS = 5


def load_workspace(store: EventStore, workspace_id: str) -> Workspace:
    """The workspace's settings as the store holds them now (defaults if never set)."""
    return Workspace.replay(workspace_id, store.load(settings_id(workspace_id)))


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """Who asked for a change: recorded as the event's ``source_event_id``."""

    via: str  # "cli" / "http"
    at: datetime | None = None


def change_settings(store: EventStore, workspace_id: str, given: Mapping[str, Any],
                    change: SettingsChange) -> Workspace:
    """Store new values for ``given`` (validated already; None resets one) and return them."""
    at = change.at or datetime.now(UTC)
    source = Expiry(f"settings:{change.via}:{uuid.uuid4()}", at)
    for attempt in range(1, ATTEMPTS + 1):
        workspace = load_workspace(store, workspace_id)
        workspace.change(source, given)
        try:
            store.commit(workspace.pending, [], [], None)
        except ConcurrencyConflict:
            if attempt == ATTEMPTS:
                raise
            continue
        workspace.pending = []
        return workspace
    raise AssertionError("unreachable")
