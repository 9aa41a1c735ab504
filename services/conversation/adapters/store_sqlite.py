"""Embedded event store: eventsourcing's SQLite process recorder plus our outcome log.

Events, outcomes, dead letters and (optionally) a tracked position are written
by one ``insert_events`` call, i.e. in one SQLite transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteProcessRecorder,
)

from schemas.events import DomainEvent, encode_event
from schemas.moments import to_micros
from schemas.stored import decode_stored
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

OUTCOME_TABLE = (
    "CREATE TABLE IF NOT EXISTS processed_events ("
    "workspace_id TEXT NOT NULL, event_id TEXT NOT NULL, contact_id TEXT NOT NULL, "
    "event_type TEXT NOT NULL, occurred_at TEXT NOT NULL, outcome TEXT NOT NULL, "
    "reason TEXT, PRIMARY KEY (workspace_id, event_id)) WITHOUT ROWID"
)
DEAD_LETTER_TABLE = (
    "CREATE TABLE IF NOT EXISTS dead_letters ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL "
    "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), source TEXT NOT NULL, "
    "workspace_id TEXT, event_id TEXT, reason TEXT NOT NULL, raw TEXT NOT NULL)"
)


class _TunedPool(SQLiteConnectionPool):
    """WAL (set by eventsourcing) plus ``synchronous=NORMAL`` and a larger cache."""

    def _create_connection(self) -> SQLiteConnection:
        conn = super()._create_connection()
        raw = conn._sqlite_conn
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA cache_size=-65536")
        raw.execute("PRAGMA temp_store=MEMORY")
        raw.execute("PRAGMA wal_autocheckpoint=16384")
        return conn


def open_datastore(path: str) -> SQLiteDatastore:
    """An eventsourcing SQLite datastore on ``path`` with our connection tuning."""
    datastore = SQLiteDatastore(path, lock_timeout=30)
    datastore.pool.close()
    datastore.pool = _TunedPool(db_name=path, lock_timeout=30)
    return datastore


class SQLiteContactRecorder(SQLiteProcessRecorder):
    """Process recorder that also writes outcomes and dead letters in its transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), OUTCOME_TABLE, DEAD_LETTER_TABLE]

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        return self._insert_rows(c, [
            (cast(uuid.UUID, s.originator_id).hex, s.originator_version, s.topic, s.state)
            for s in stored_events], **kwargs)

    def insert_rows(self, rows: Sequence[StoredRow], **kwargs: Any) -> list[int]:
        """:meth:`insert_events` for rows already in the table's column order."""
        with self.datastore.transaction(commit=True) as c:
            return self._insert_rows(c, rows, **kwargs)

    def _insert_rows(self, c: SQLiteCursor, rows: Sequence[StoredRow],
                     **kwargs: Any) -> list[int]:
        ids: list[int] = []
        if rows:
            # One executemany instead of eventsourcing's insert-per-event loop. We
            # hold the write lock, so rowids (= notification ids) are contiguous.
            c.executemany(self.insert_events_statement, rows)
            c.execute(self.select_max_notification_id_statement)
            last = int(c.fetchone()[0])
            ids = list(range(last - len(rows) + 1, last + 1))
        tracking: Tracking | None = kwargs.get("tracking")
        if tracking is not None:
            self._insert_tracking(c, tracking)
        outcomes: Sequence[Outcome] = kwargs.get("outcomes", ())
        if outcomes:
            # by position: plain tuples in Outcome's field order are welcome too
            c.executemany(
                "INSERT INTO processed_events VALUES (?,?,?,?,?,?,?)",
                [(ws, eid, cid, kind, _isoformat(at), outcome, reason)
                 for ws, eid, cid, kind, at, outcome, reason in outcomes],
            )
        dead: Sequence[DeadLetter] = kwargs.get("dead_letters", ())
        if dead:
            c.executemany(
                "INSERT INTO dead_letters (raw, reason, source, workspace_id, event_id) "
                "VALUES (?,?,?,?,?)", dead)
        read: Mapping[str, int] | None = kwargs.get("read")
        if read:  # after our writes: we hold the write lock, so this is current
            self._check_unmoved(c, read)
        return ids

    def _check_unmoved(self, c: SQLiteCursor, read: Mapping[str, int]) -> None:
        """Raise IntegrityError if an aggregate is no longer at the version it was read at."""
        found = {row[0]: int(row[1]) for row in select_in(
            c, f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name} "
               "WHERE originator_id", list(read), "GROUP BY originator_id")}
        moved = [k for k in read if found.get(k, 0) != read[k]]
        if moved:
            raise IntegrityError(f"aggregate {moved[0]} moved after version "
                                 f"{read[moved[0]]} was read (another writer)")

    def select_many(self, originator_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[bytes]]:
        """Stored states of several aggregates, each in version order."""
        found: dict[uuid.UUID, list[bytes]] = {}
        by_hex = {oid.hex: oid for oid in originator_ids}
        with self.datastore.transaction(commit=False) as c:
            for row in select_in(c, f"SELECT originator_id, state FROM {self.events_table_name} "
                                    "WHERE originator_id", list(by_hex),
                                 "ORDER BY originator_id, originator_version"):
                found.setdefault(by_hex[row[0]], []).append(row[1])
        return found


def select_in(c: SQLiteCursor, head: str, values: Sequence[Any], tail: str = "",
              before: Sequence[Any] = ()) -> Iterator[Any]:
    """Rows of ``{head} IN (values...) {tail}``, asked 900 values at a time.

    SQLite limits the parameters of one statement; ``before`` are the
    parameters of ``head``, sent with every chunk.
    """
    for start in range(0, len(values), 900):
        chunk = values[start:start + 900]
        c.execute(f"{head} IN ({', '.join('?' * len(chunk))}) {tail}", [*before, *chunk])
        yield from c.fetchall()


def packed_outcome(outcome: Outcome) -> tuple[Any, ...]:
    """An outcome as a plain tuple for another process, its UTC time as epoch microseconds.

    Both pickle several times faster than the NamedTuple and the datetime;
    :meth:`SQLiteEventStore.commit_rows` takes outcomes in this form too.
    """
    at = outcome.occurred_at
    return (*outcome[:4], to_micros(at) if at.tzinfo is UTC else at, *outcome[5:])


def _isoformat(at: datetime | int) -> str:
    """``occurred_at.isoformat()`` of an outcome, also when packed as epoch microseconds
    (then from the minute's text, made once: a third of the cost of a datetime's)."""
    if not isinstance(at, int):
        return at.isoformat()
    minute, micros = divmod(at, 60_000_000)
    prefix = _MINUTES.get(minute)
    if prefix is None:
        if len(_MINUTES) >= 1 << 16:
            _MINUTES.clear()
        prefix = _MINUTES[minute] = (_EPOCH + timedelta(minutes=minute)).isoformat()[:17]
    seconds, fraction = divmod(micros, 1_000_000)
    if fraction:
        return f"{prefix}{seconds:02d}.{fraction:06d}+00:00"
    return f"{prefix}{seconds:02d}+00:00"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: ``YYYY-MM-DDTHH:MM:`` of a minute since the epoch (UTC)
_MINUTES: dict[int, str] = {}


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
               read: Mapping[uuid.UUID, int] | None = None) -> list[int]:
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
