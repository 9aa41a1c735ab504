"""The workspace-settings aggregate: one per workspace (CONTRACT §6.1).

Its events live in the same event store as the contacts' (replay and audit see
every change), under the aggregate id of the reserved contact id ``""`` (a
gateway contact id has at least one character). A change records the settings
as they are after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.events import BusinessInterval, DomainEvent, WorkspaceSettingsChanged
from schemas.trusted import construct

from .contact import Source, aggregate_id, name_uuid

SETTINGS_CONTACT: Final = ""
SETTING_NAMES: Final = ("timezone", "business_hours", "inactivity_timeout_seconds")
DEFAULTS: Final[Mapping[str, Any]] = {
    "timezone": "UTC", "business_hours": None, "inactivity_timeout_seconds": None}


def settings_id(workspace_id: str) -> uuid.UUID:
    """The event store id of a workspace's settings aggregate."""
    return aggregate_id(workspace_id, SETTINGS_CONTACT)


@dataclass(slots=True)
class Workspace:
    """Event-sourced settings of one workspace."""

    workspace_id: str
    version: int = 0
    timezone: str = "UTC"
    business_hours: tuple[BusinessInterval, ...] | None = None
    inactivity_timeout_seconds: int | None = None
    pending: list[DomainEvent] = field(default_factory=list)

    @classmethod
    def replay(cls, workspace_id: str, events: Sequence[DomainEvent]) -> Workspace:
        workspace = cls(workspace_id)
        for event in events:
            workspace.apply(event)
        return workspace

    def apply(self, event: DomainEvent) -> None:
        self.version = event.aggregate_version
        if isinstance(event, WorkspaceSettingsChanged):
            self.timezone = event.timezone
            self.business_hours = event.business_hours
            self.inactivity_timeout_seconds = event.inactivity_timeout_seconds

    def values(self) -> dict[str, Any]:
        """The settings object of CONTRACT §6.1, defaults filled in."""
        return {
            "timezone": self.timezone,
            "business_hours": None if self.business_hours is None
            else [interval.model_dump() for interval in self.business_hours],
            "inactivity_timeout_seconds": self.inactivity_timeout_seconds,
        }

    def change(self, source: Source, given: Mapping[str, Any]) -> WorkspaceSettingsChanged:
        """Record new values for the ``given`` settings (already validated; None resets).

        ``business_hours`` is a list of ``{"day", "start", "end"}`` mappings or None.
        """
        unknown = set(given) - set(SETTING_NAMES)
        if unknown:
            raise ValueError(f"unknown setting {sorted(unknown)[0]!r}")
        merged = {**self.values(), **{k: (DEFAULTS[k] if v is None else v)
                                      for k, v in given.items()}}
        hours = merged["business_hours"]
        version = self.version + 1
        event = construct(
            WorkspaceSettingsChanged,
            event_id=name_uuid(settings_id(self.workspace_id), str(version)),
            workspace_id=self.workspace_id, contact_id=SETTINGS_CONTACT,
            aggregate_version=version, occurred_at=source.occurred_at,
            source_event_id=source.event_id, timezone=merged["timezone"],
            business_hours=None if hours is None else tuple(
                BusinessInterval.model_validate(dict(item)) for item in hours),
            inactivity_timeout_seconds=merged["inactivity_timeout_seconds"],
            changed=tuple(name for name in SETTING_NAMES if name in given),
        )
        self.apply(event)
        self.pending.append(event)
        return event
