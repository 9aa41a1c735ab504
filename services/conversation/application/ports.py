"""Ports of the conversation service: what it needs from storage, as Protocols.

The embedded runtime plugs in SQLite, the production runtime PostgreSQL; unit
tests use the in-memory fake in ``tests/fakes.py``. All are driven by the same
:class:`~services.conversation.application.processor.BatchProcessor`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from schemas.events import DomainEvent


class Outcome(NamedTuple):
    """What became of one processed gateway event (accepted or rejected).

    Stored with the events of the same batch; its key de-duplicates redeliveries.
    """

    workspace_id: str
    event_id: str
    contact_id: str
    event_type: str
    occurred_at: datetime
    outcome: str
    reason: str | None = None


class DeadLetter(NamedTuple):
    """Input that could not be processed, kept with its raw text and the reason."""

    raw: str
    reason: str
    source: str
    workspace_id: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """A consumed position recorded atomically with a batch (eventsourcing Tracking).

    ``after``, when given, is the position the batch was computed from: the
    store refuses the write (IntegrityError) if another process moved the
    recorded position meanwhile (compare-and-set; 0 = never recorded).
    """

    name: str
    offset: int
    after: int | None = None


@dataclass(slots=True)
class StoredKeys:
    """What may be in the store: a miss here is certain, a hit must be asked.

    Taken when a bulk import starts and grown with what the import stores, it
    lets the batch processor skip the store lookups that must come back empty:
    dedupe keys never seen, contacts without events. If another process writes
    to the store meanwhile, its rows are missing here; the store's unique keys
    then refuse our write (a :class:`ConcurrencyConflict`), and the caller
    redoes the batch after ``BatchProcessor.forget()``, which drops these keys
    and asks the store again for everything.
    """

    #: ``hash((workspace_id, event_id))`` of every outcome
    outcomes: set[int]
    #: originator ids of the aggregates with events
    aggregates: set[uuid.UUID]


class EventStore(Protocol):
    """The contact aggregates' event store plus the outcome log."""

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        """Every stored event of one aggregate, in version order."""
        ...

    def load_many(
        self, originator_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, list[DomainEvent]]:
        """Events of several aggregates in one round trip (absent ones map to nothing)."""
        ...

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those ``(workspace_id, event_id)`` keys that already have an outcome."""
        ...

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None,
               read: Mapping[uuid.UUID, int] | None = None) -> list[int]:
        """Write all of it in one transaction; return the events' notification ids.

        ``read``: the aggregates the batch's decisions read without writing, with
        the version each had (0: no events). Raises :class:`ConcurrencyConflict`
        when an aggregate version is taken or one of those has moved since.
        """
        ...

    def position(self, name: str) -> int | None:
        """The last offset recorded under ``name`` (None if never)."""
        ...

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        """Events in notification order with ids greater than ``after``."""
        ...

    def max_notification_id(self) -> int:
        ...


class ConcurrencyConflict(Exception):
    """Another writer stored an event at a version this batch wanted."""
