"""Embedded event store: eventsourcing's SQLite process recorder plus our outcome log.

Events, outcomes, dead letters and (optionally) a tracked position are written
by one ``insert_events`` call, i.e. in one SQLite transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.sqlite import SQLiteDatastore

from schemas.events import DomainEvent, encode_event
from schemas.stored import decode_stored
from services.conversation.adapters.sqlite_recorder import (
    DEAD_LETTER_TABLE,
    OUTCOME_TABLE,
    SQLiteContactRecorder,
    open_datastore,
    packed_outcome,
    select_in,
)
from services.conversation.application.ports import (
    ConcurrencyConflict,
    DeadLetter,
    EncodedBatch,
    EncodedCommits,
    Outcome,
    Position,
    StoredKeys,
    StoredRow,
)
from services.conversation.domain.contact import aggregate_id

__all__ = ["DEAD_LETTER_TABLE", "OUTCOME_TABLE", "SQLiteContactRecorder", "SQLiteEventStore",
           "StoredRow", "open_datastore", "originator_hex", "packed_outcome", "read_by",
           "select_in", "to_row"]


@lru_cache(maxsize=1 << 18)
def originator_hex(workspace_id: str, contact_id: str) -> str:
    """The events table's ``originator_id`` of a contact's aggregate."""
    return aggregate_id(workspace_id, contact_id).hex


def to_row(event: DomainEvent) -> StoredRow:
    """A domain event as a row of the events table (topic = event type)."""
    values = event.__dict__
    return (originator_hex(values["workspace_id"], values["contact_id"]),
            values["aggregate_version"], values["event_type"], encode_event(event))


class SQLiteEventStore:
    """:class:`~services.conversation.application.ports.EventStore` on an SQLite file.

    Capabilities (``ports``): :class:`~.ports.EncodedCommits` (the bulk import's
    writer process commits what the importing process decided and encoded).
    """

    def __init__(self, datastore: SQLiteDatastore) -> None:
        self.datastore = datastore
        self.recorder = SQLiteContactRecorder(datastore)
        self.recorder.create_table()

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        return [decode_stored(s.state) for s in self.recorder.select_events(originator_id)]

    def load_many(
        self, originator_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, list[DomainEvent]]:
        states = self.recorder.select_many(list(originator_ids))
        return {oid: [decode_stored(s) for s in rows] for oid, rows in states.items()}

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        by_workspace: dict[str, list[str]] = {}
        for workspace_id, event_id in keys:
            by_workspace.setdefault(workspace_id, []).append(event_id)
        found: set[tuple[str, str]] = set()
        with self.datastore.transaction(commit=False) as c:
            for workspace_id, event_ids in by_workspace.items():
                found.update((workspace_id, row[0]) for row in select_in(
                    c, "SELECT event_id FROM processed_events WHERE workspace_id=? AND event_id",
                    event_ids, before=(workspace_id,)))
        return found

    def stored_keys(self, limit: int = 1_000_000) -> StoredKeys | None:
        """Every outcome key (hashed) and aggregate id in the store, or None above ``limit``.

        For a bulk import's ``BatchProcessor.assume_stored``: a set of a
        few million hashes is cheaper than asking the store for each key.
        """
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT count(*) FROM processed_events")
            if int(c.fetchone()[0]) > limit:
                return None
            c.execute("SELECT workspace_id, event_id FROM processed_events")
            outcomes = {hash((row[0], row[1])) for row in c.fetchall()}
            c.execute("SELECT DISTINCT originator_id FROM "
                      f"{self.recorder.events_table_name}")
            aggregates = {uuid.UUID(row[0]) for row in c.fetchall()}
        return StoredKeys(outcomes, aggregates)

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None,
               read: Mapping[uuid.UUID, int] | None = None, *,
               originators: Sequence[uuid.UUID] | None = None) -> list[int]:
        return self.commit_rows([to_row(e) for e in events], outcomes, dead_letters, position,
                                {oid.hex: v for oid, v in read.items()} if read else None)

    def encode(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter],
               read: Mapping[uuid.UUID, int]) -> EncodedBatch:
        """What :meth:`commit` writes, as plain tuples for :meth:`commit_encoded`."""
        return EncodedBatch([to_row(e) for e in events], [packed_outcome(o) for o in outcomes],
                            [tuple(d) for d in dead_letters],
                            [(oid.hex, v) for oid, v in read.items()])

    def commit_encoded(self, batches: Sequence[EncodedBatch]) -> list[int]:
        """Several encoded batches in one transaction (see :func:`read_by`)."""
        rows = [row for batch in batches for row in batch.rows]
        return self.commit_rows(rows, [o for batch in batches for o in batch.outcomes],
                                [d for batch in batches for d in batch.dead_letters], None,
                                read_by(batches, rows))

    def commit_rows(self, rows: Sequence[StoredRow], outcomes: Sequence[tuple[Any, ...]],
                    dead_letters: Sequence[tuple[Any, ...]], position: Position | None,
                    read: Mapping[str, int] | None = None) -> list[int]:
        """:meth:`commit` for events already encoded by :func:`to_row`.

        Outcomes and dead letters may be plain tuples in the field order of
        :class:`Outcome` and :class:`DeadLetter`; ``read`` is keyed by the
        originator id as the table holds it (hex).
        """
        tracking = Tracking(position.name, position.offset) if position else None
        try:
            return self.recorder.insert_rows(rows, tracking=tracking, outcomes=outcomes,
                                             dead_letters=dead_letters, read=read)
        except IntegrityError as exc:
            raise ConcurrencyConflict(str(exc)) from exc

    def position(self, name: str) -> int | None:
        result: int | None = self.recorder.max_tracking_id(name)
        return result

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        notes = self.recorder.select_notifications(after, limit, inclusive_of_start=False)
        return [(n.id, decode_stored(n.state)) for n in notes]

    def max_notification_id(self) -> int:
        return int(self.recorder.max_notification_id() or 0)


def read_by(batches: Sequence[EncodedBatch], rows: Sequence[StoredRow]) -> dict[str, int]:
    """What batches committed together read without writing, for the version check.

    An aggregate one of them also writes is left out: another writer that moved
    it would have taken the version we insert, which the unique index refuses.
    """
    read = {oid: version for batch in batches for oid, version in batch.read}
    if read:
        for row in rows:
            read.pop(row[0], None)
    return read


if TYPE_CHECKING:  # mypy checks the declared capability
    _ENCODED: type[EncodedCommits] = SQLiteEventStore
