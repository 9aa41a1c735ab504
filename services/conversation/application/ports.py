"""Ports of the conversation service: what it needs from storage, as Protocols.

The embedded runtime plugs in SQLite, the production runtime PostgreSQL; unit
tests use the in-memory fake in ``tests/fakes.py``. All are driven by the same
unit of work (:mod:`.unit_of_work`).

:class:`EventStore` is what every store does. What only some stores can do is
declared as a capability Protocol below (:class:`RawEventReader`,
:class:`PartitionedEventReader`, :class:`RecordsManyPositions`,
:class:`EncodedCommits`); code that uses one checks for it once, where it is
constructed, never with ``getattr`` where it calls it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class Positions(Position):
    """Several positions (Kafka partitions) recorded in the same transaction.

    ``name``/``offset``/``after`` are the first; a store that
    :class:`RecordsManyPositions` records ``others`` too (each must move
    forward and meet its ``after``, or the transaction fails with
    :class:`ConcurrencyConflict`). Give it only to such a store.
    """

    others: tuple[Position, ...] = ()

    def all(self) -> tuple[Position, ...]:
        return (Position(self.name, self.offset, self.after), *self.others)


@dataclass(slots=True)
class StoredKeys:
    """What may be in the store: a miss here is certain, a hit must be asked.

    Taken when a bulk import starts and grown with what the import stores, it
    lets the batch processor skip the store lookups that must come back empty:
    dedupe keys never seen, contacts without events. If another process writes
    to the store meanwhile, its rows are missing here; the store's unique keys
    then refuse our write (a :class:`ConcurrencyConflict`), and the caller
    redoes the batch after ``BatchUnitOfWork.forget()``, which drops these keys
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
               read: Mapping[uuid.UUID, int] | None = None, *,
               originators: Sequence[uuid.UUID] | None = None) -> list[int]:
        """Write all of it in one transaction; return the events' notification ids.

        ``read``: the aggregates the batch's decisions read without writing, with
        the version each had (0: no events). Raises :class:`ConcurrencyConflict`
        when an aggregate version is taken or one of those has moved since.
        ``originators``: the aggregate id of each event, when the caller has them
        (``aggregate_id`` of its workspace and contact: the store need not look it up).
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


# -- capabilities: what only some stores can do ---------------------------------------

#: A stored event as an events table holds it: originator id (hex), version,
#: topic (the event type), stored JSON.
StoredRow = tuple[str, int, str, bytes]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A decided batch encoded by the store that will write it (to cross a process).

    Plain tuples: they pickle several times faster than NamedTuples and models.
    ``rows[i][3]`` is the stored JSON of the i-th event (what a projection of
    stored events reads).
    """

    rows: list[StoredRow]
    #: in the field order of :class:`Outcome` (the store may pack the time)
    outcomes: list[tuple[Any, ...]]
    #: in the field order of :class:`DeadLetter`
    dead_letters: list[tuple[Any, ...]]
    #: aggregates the batch read without writing: (originator id hex, version)
    read: list[tuple[str, int]] = field(default_factory=list)


@runtime_checkable
class RawEventReader(Protocol):
    """Reads the notification log as stored JSON, without decoding it (PostgreSQL)."""

    def read_raw(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """``(notification id, stored JSON)`` after ``after``, in order."""
        ...


@runtime_checkable
class PartitionedEventReader(Protocol):
    """Streams one partition of the aggregates' events, for a parallel replay (PostgreSQL)."""

    def stream_partition(self, upto: int, part: int, parts: int,
                         chunk: int = 20_000) -> Iterator[list[bytes]]:
        ...

    def max_notification_id(self) -> int:
        ...


@runtime_checkable
class RecordsManyPositions(Protocol):
    """Its ``commit`` records every position of a :class:`Positions` in one transaction."""

    #: declares the capability (a runtime Protocol checks that the name is there)
    tracks_many_positions: bool


@runtime_checkable
class ReadsBatchAtOnce(Protocol):
    """Answers a batch's ``seen`` and ``load_many`` in one round trip (PostgreSQL)."""

    def seen_and_load(self, keys: Collection[tuple[str, str]],
                      originator_ids: Collection[uuid.UUID]
                      ) -> tuple[set[tuple[str, str]], dict[uuid.UUID, list[DomainEvent]]]:
        """``seen(keys)`` and ``load_many(originator_ids)``, both non-empty."""
        ...


@runtime_checkable
class EncodedCommits(Protocol):
    """Commits decisions encoded in one process in another one (SQLite bulk import)."""

    def stored_keys(self, limit: int = 1_000_000) -> StoredKeys | None:
        """Every outcome key (hashed) and aggregate id in the store, or None above ``limit``."""
        ...

    def encode(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter],
               read: Mapping[uuid.UUID, int]) -> EncodedBatch:
        """What :meth:`EventStore.commit` would write, encoded for :meth:`commit_encoded`."""
        ...

    def commit_encoded(self, batches: Sequence[EncodedBatch]) -> list[int]:
        """Write several encoded batches in one transaction (as ``commit`` does one)."""
        ...
