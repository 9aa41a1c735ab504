"""The workspace-settings aggregate: one per workspace (CONTRACT §6.1).

Its events live in the same event store as the contacts' (replay and audit see
every change), under the aggregate id of the reserved contact id ``""`` (a
gateway contact id has at least one character). A change records the settings
as they are after it; values are validated by :mod:`schemas.workspace` before
anything is recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from schemas.construct import construct
from schemas.events import DomainEvent, WorkspaceSettingsChanged
from schemas.workspace import WorkspaceSettings, apply_patch
from services.conversation.domain.ids import aggregate_id, name_uuid
from services.conversation.domain.sources import Source

SETTINGS_CONTACT: Final = ""


def settings_id(workspace_id: str) -> uuid.UUID:
    """The event store id of a workspace's settings aggregate."""
    return aggregate_id(workspace_id, SETTINGS_CONTACT)


@dataclass(slots=True)
class Workspace:
    """Event-sourced settings of one workspace."""

    workspace_id: str
    version: int = 0
    settings: WorkspaceSettings = field(default_factory=WorkspaceSettings)
    pending: list[DomainEvent] = field(default_factory=list)

    @classmethod
    def replay(cls, workspace_id: str, events: Sequence[DomainEvent]) -> Workspace:
        workspace = cls(workspace_id)
        for event in events:
            workspace.apply(event)
        return workspace

    @property
    def inactivity_timeout_seconds(self) -> int | None:
        return self.settings.inactivity_timeout_seconds

    def apply(self, event: DomainEvent) -> None:
        self.version = event.aggregate_version
        if isinstance(event, WorkspaceSettingsChanged):
            self.settings = event.settings()

    def change(self, source: Source, patch: Mapping[str, object]) -> WorkspaceSettingsChanged:
        """Record the settings after ``patch`` (CONTRACT §6.1 ``PUT`` rule: given keys
        replace, ``None`` resets one). Raises ``SettingsError`` and records nothing
        when a key is unknown or a value invalid."""
        new = apply_patch(self.settings, patch)
        version = self.version + 1
        event = construct(
            WorkspaceSettingsChanged,
            event_id=name_uuid(settings_id(self.workspace_id), str(version)),
            workspace_id=self.workspace_id, contact_id=SETTINGS_CONTACT,
            aggregate_version=version, occurred_at=source.occurred_at,
            source_event_id=source.event_id, timezone=new.timezone,
            business_hours=new.business_hours,
            inactivity_timeout_seconds=new.inactivity_timeout_seconds,
            changed=tuple(name for name in WorkspaceSettings.model_fields if name in patch),
        )
        self.apply(event)
        self.pending.append(event)
        return event
