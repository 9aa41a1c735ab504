"""The SQLite side of the embedded event store: eventsourcing's process recorder, tuned,
plus our tables (outcomes, dead letters) written in its transaction.

:class:`SQLiteContactRecorder` writes events, outcomes, dead letters and
(optionally) a tracked position with one ``executemany`` per table, in one SQLite
transaction; :mod:`.store_sqlite` is the port built on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteProcessRecorder,
)

from schemas.moments import to_micros
from services.conversation.application.ports import DeadLetter, Outcome, StoredRow

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
