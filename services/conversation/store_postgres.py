"""Production event store: eventsourcing's PostgreSQL process recorder plus our outcome log.

Mirrors :mod:`.store_sqlite`: events, outcomes, dead letters and (optionally) a
tracked position are written by one ``insert_events`` call, i.e. in one
PostgreSQL transaction (eventsourcing pipelines it and serialises writers with
an ``EXCLUSIVE`` table lock, so notification ids are committed in order).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any, ParamSpec, TypeVar

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from schemas.events import DomainEvent, decode_event, encode_event, event_type_of

from .domain.contact import aggregate_id
from .ports import ConcurrencyConflict, DeadLetter, Outcome, Position

P = ParamSpec("P")
R = TypeVar("R")

EVENTS_TABLE = "stored_events"
TRACKING_TABLE = "notification_tracking"
OUTCOME_TABLE = (
    "CREATE TABLE IF NOT EXISTS {schema}.processed_events ("
    "workspace_id text NOT NULL, event_id text NOT NULL, contact_id text NOT NULL, "
    "event_type text NOT NULL, occurred_at timestamptz NOT NULL, outcome text NOT NULL, "
    "reason text, PRIMARY KEY (workspace_id, event_id))"
)
DEAD_LETTER_TABLE = (
    "CREATE TABLE IF NOT EXISTS {schema}.dead_letters ("
    "id bigserial PRIMARY KEY, received_at timestamptz NOT NULL DEFAULT now(), "
    "source text NOT NULL, workspace_id text, event_id text, reason text NOT NULL, "
    "raw text NOT NULL)"
)
_INSERT_OUTCOMES = (
    "INSERT INTO {schema}.processed_events (workspace_id, event_id, contact_id, event_type, "
    "occurred_at, outcome, reason) SELECT * FROM unnest("
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::text[])"
)
_INSERT_DEAD_LETTERS = (
    "INSERT INTO {schema}.dead_letters (source, workspace_id, event_id, reason, raw) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
)
# Four plain arrays in binary format: several times faster to send than
# eventsourcing's array of composites in text format.
_INSERT_EVENTS = (
    "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
    "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
    "RETURNING notification_id"
)
_SEEN = (
    "SELECT p.workspace_id, p.event_id FROM {schema}.processed_events p "
    "JOIN unnest(%b::text[], %b::text[]) AS k(workspace_id, event_id) "
    "ON p.workspace_id = k.workspace_id AND p.event_id = k.event_id"
)
_LOAD_MANY = (
    "SELECT originator_id, state FROM {schema}.{table} WHERE originator_id = ANY(%b::uuid[]) "
    "ORDER BY originator_id, originator_version"
)


def transient_retry(func: Callable[P, R]) -> Callable[P, R]:
    """Retry a read a few times on a dropped connection (eventsourcing's policy, shorter)."""
    wrapped: Callable[P, R] = retry((InterfaceError, OperationalError), max_attempts=3,
                                    wait=0.2)(func)
    return wrapped


def pg_text(value: str | None) -> str | None:
    """PostgreSQL ``text`` cannot hold NUL: replace it rather than lose the whole batch."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def sql(template: str, schema: str, **names: str) -> Composed:
    """A statement with ``{schema}`` (and other ``{names}``) filled in as identifiers."""
    return SQL(template).format(schema=Identifier(schema),
                                **{key: Identifier(value) for key, value in names.items()})


def to_stored(event: DomainEvent) -> StoredEvent:
    """Map a domain event onto eventsourcing's stored form (topic = event type)."""
    return StoredEvent(
        originator_id=aggregate_id(event.workspace_id, event.contact_id),
        originator_version=event.aggregate_version,
        topic=event_type_of(event),
        state=encode_event(event),
    )


class ContactEventRecorder(PostgresProcessRecorder):
    """Process recorder that also writes outcomes and dead letters in its transaction."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, events_table_name=EVENTS_TABLE,
                         tracking_table_name=TRACKING_TABLE)
        schema = datastore.schema
        self.sql_create_statements.extend(
            [sql(OUTCOME_TABLE, schema), sql(DEAD_LETTER_TABLE, schema)])
        self.insert_outcomes_statement = sql(_INSERT_OUTCOMES, schema)
        self.insert_dead_letters_statement = sql(_INSERT_DEAD_LETTERS, schema)
        self.insert_event_columns_statement = sql(_INSERT_EVENTS, schema, table=EVENTS_TABLE)

    def _insert_stored_events(self, curs: Cursor[DictRow],
                              stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        self._lock_table(curs)  # as eventsourcing: commit order = notification id order
        self._notify_channel(curs)
        curs.execute(self.insert_event_columns_statement, (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events], [e.state for e in stored_events]), prepare=True)

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)  # the tracked position
        outcomes: Sequence[Outcome] = kwargs.get("outcomes", ())
        if outcomes:
            curs.execute(self.insert_outcomes_statement, (
                [o.workspace_id for o in outcomes], [pg_text(o.event_id) for o in outcomes],
                [pg_text(o.contact_id) for o in outcomes], [o.event_type for o in outcomes],
                [o.occurred_at for o in outcomes], [o.outcome for o in outcomes],
                [o.reason for o in outcomes]), prepare=True)
        dead: Sequence[DeadLetter] = kwargs.get("dead_letters", ())
        if dead:
            curs.execute(self.insert_dead_letters_statement, (
                [d.source for d in dead], [pg_text(d.workspace_id) for d in dead],
                [pg_text(d.event_id) for d in dead], [pg_text(d.reason) for d in dead],
                [pg_text(d.raw) for d in dead]), prepare=True)


class PostgresEventStore:
    """:class:`~services.conversation.ports.EventStore` on PostgreSQL."""

    def __init__(self, datastore: PostgresDatastore, *, create_tables: bool = True) -> None:
        self.datastore = datastore
        self.recorder = ContactEventRecorder(datastore)
        if create_tables:
            self.recorder.create_table()
        schema = datastore.schema
        self._seen = sql(_SEEN, schema)
        self._load_many = sql(_LOAD_MANY, schema, table=EVENTS_TABLE)

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        return [decode_event(s.state) for s in self.recorder.select_events(originator_id)]

    @transient_retry
    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        """Events of several aggregates in one query (absent ones map to nothing)."""
        found: dict[uuid.UUID, list[DomainEvent]] = {}
        if not originator_ids:
            return found
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._load_many, (list(set(originator_ids)),), prepare=True)
            for originator_id, state in curs:
                found.setdefault(originator_id, []).append(decode_event(bytes(state)))
        return found

    @transient_retry
    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        items = list(keys)
        with (self.datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row) as curs):
            curs.execute(self._seen, ([k[0] for k in items], [pg_text(k[1]) for k in items]),
                         prepare=True)
            found = {(row[0], row[1]) for row in curs}
        if any("\x00" in k[1] for k in items):  # map sanitised ids back to what was asked
            asked = {(k[0], pg_text(k[1])): k for k in items}
            return {asked[key] for key in found if key in asked}
        return found

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None) -> list[int]:
        tracking = Tracking(position.name, position.offset) if position else None
        try:
            ids = self.recorder.insert_events(
                [to_stored(e) for e in events], tracking=tracking,
                outcomes=outcomes, dead_letters=dead_letters)
        except IntegrityError as exc:
            raise ConcurrencyConflict(str(exc)) from exc
        return list(ids or [])

    def position(self, name: str) -> int | None:
        result: int | None = self.recorder.max_tracking_id(name)
        return result

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        notes = self.recorder.select_notifications(after, limit, inclusive_of_start=False)
        return [(n.id, decode_event(n.state)) for n in notes]

    def max_notification_id(self) -> int:
        return int(self.recorder.max_notification_id() or 0)
