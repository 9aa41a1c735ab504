"""What deciding a batch produces: its counts and what to store (:class:`BatchResult`),
and the decided-but-not-stored batch the unit of work commits (:class:`Decision`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.commands import CommandBase
from schemas.events import DomainEvent
from services.conversation.application.ports import DeadLetter, Outcome
from services.ingest.domain.normalise import Invalid


@dataclass(slots=True)
class BatchResult:
    """Counts of one batch (CONTRACT §4 import summary) and what it stored."""

    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: the duplicates by gateway event type (for the metrics)
    duplicate_types: Counter[str] = field(default_factory=Counter)
    #: conversations closed after inactivity (by sweeps and by the contacts' events)
    expired: int = 0
    events: list[tuple[int, DomainEvent]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class Decision:
    """A decided but not yet stored batch."""

    result: BatchResult
    events: list[DomainEvent]
    touched: list[tuple[str, str]]
    #: what was decided, to decide it again from storage after a conflict
    items: Sequence[CommandBase | Invalid] = ()
    source: str = "import"
    #: the dedupe keys it decided, while it is in flight
    keys: list[tuple[str, str]] = field(default_factory=list)
    #: aggregates it read without writing, with their version (see EventStore.commit)
    read: dict[uuid.UUID, int] = field(default_factory=dict)
    #: the aggregate id of each of ``events`` (see EventStore.commit)
    originators: list[uuid.UUID] | None = None
