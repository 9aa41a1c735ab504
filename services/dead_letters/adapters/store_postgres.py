"""The operator queries on PostgreSQL (one connection of their own, autocommit).

Connecting never creates tables: the ``dead_letter_retries`` table is created
by the first retry, and queries on a schema without the tables find nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from schemas.events import DomainEvent, decode_event
from services.conversation.domain.contact import aggregate_id
from services.dead_letters.application.ports import (
    DeadLetterEntry,
    DeadLetterFilter,
    RetryRecord,
    StoredOutcome,
    shown_source,
)
from services.runtime.pg import PostgresTarget, pg_text

RETRY_TABLE = (
    "CREATE TABLE IF NOT EXISTS {schema}.dead_letter_retries (entry text PRIMARY KEY, "
    "outcome text NOT NULL, reason text, retried_at timestamptz NOT NULL, "
    "attempts integer NOT NULL)"
)
_UPSERT = (
    "INSERT INTO {schema}.dead_letter_retries AS r VALUES (%s, %s, %s, %s, 1) "
    "ON CONFLICT (entry) DO UPDATE SET outcome = excluded.outcome, reason = excluded.reason, "
    "retried_at = excluded.retried_at, attempts = r.attempts + 1 WHERE r.outcome = 'invalid'"
)
_DEAD_LETTER_COLUMNS = "id, received_at, source, workspace_id, event_id, reason, raw"


class PostgresOperationsStore:
    """:class:`~services.dead_letters.application.ports.OperationsStore` on PostgreSQL."""

    def __init__(self, target: PostgresTarget) -> None:
        self.schema = target.schema
        self.conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
            **target.params, autocommit=True, row_factory=tuple_row)

    def close(self) -> None:
        self.conn.close()

    def _sql(self, template: str) -> Composed:
        return SQL(template).format(schema=Identifier(self.schema))

    def _has_table(self, name: str) -> bool:
        quoted = self.schema.replace('"', '""')
        row = self.conn.execute("SELECT to_regclass(%s)", (f'"{quoted}".{name}',)).fetchone()
        return row is not None and row[0] is not None

    def outcome(self, workspace_id: str, event_id: str) -> StoredOutcome | None:
        if not self._has_table("processed_events"):
            return None
        row = self.conn.execute(self._sql(
            "SELECT workspace_id, event_id, contact_id, event_type, occurred_at, outcome, "
            "reason FROM {schema}.processed_events WHERE workspace_id = %s AND event_id = %s"),
            (workspace_id, event_id)).fetchone()
        return None if row is None else StoredOutcome(*row)

    def aggregate_events(self, workspace_id: str, contact_id: str) -> list[DomainEvent]:
        if not self._has_table("stored_events"):
            return []
        rows = self.conn.execute(self._sql(
            "SELECT state FROM {schema}.stored_events WHERE originator_id = %s "
            "ORDER BY originator_version"), (aggregate_id(workspace_id, contact_id),)).fetchall()
        return [decode_event(bytes(row[0])) for row in rows]

    def merge_events(self, workspace_id: str, event_id: str) -> list[DomainEvent]:
        if not self._has_table("stored_events"):
            return []
        rows = self.conn.execute(self._sql(
            "SELECT state FROM {schema}.stored_events WHERE topic = 'ContactMerged' "
            "AND convert_from(state, 'UTF8')::jsonb ->> 'source_event_id' = %s "
            "AND convert_from(state, 'UTF8')::jsonb ->> 'workspace_id' = %s"),
            (event_id, workspace_id)).fetchall()
        return [decode_event(bytes(row[0])) for row in rows]

    def dead_letters(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        if not self._has_table("dead_letters"):
            return []
        clauses: list[str] = []
        params: list[Any] = []
        for column, operator, value in where.terms():
            if operator == "in":
                clauses.append(f"{column} = ANY(%s)")
                params.append(list(value))
            else:
                clauses.append(f"{column} {operator} %s")
                params.append(value)
        text = f"SELECT {_DEAD_LETTER_COLUMNS} FROM {{schema}}.dead_letters"
        if clauses:
            text += " WHERE " + " AND ".join(clauses)
        rows = self.conn.execute(self._sql(text + " ORDER BY id"), params).fetchall()
        return self._entries(rows)

    def dead_letters_by_id(self, ids: Collection[int]) -> list[DeadLetterEntry]:
        if not ids or not self._has_table("dead_letters"):
            return []
        rows = self.conn.execute(self._sql(
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM {{schema}}.dead_letters WHERE id = ANY(%s) "
            "ORDER BY id"), (sorted(set(ids)),)).fetchall()
        return self._entries(rows)

    def _entries(self, rows: list[tuple[Any, ...]]) -> list[DeadLetterEntry]:
        retries = self.retries([str(row[0]) for row in rows])
        return [DeadLetterEntry(str(row[0]), row[1], shown_source(row[2]), row[5], row[6],
                                row[3], row[4], retry=retries.get(str(row[0])))
                for row in rows]

    def retries(self, ids: Collection[str]) -> dict[str, RetryRecord]:
        if not ids or not self._has_table("dead_letter_retries"):
            return {}
        rows = self.conn.execute(self._sql(
            "SELECT entry, outcome, reason, retried_at, attempts FROM "
            "{schema}.dead_letter_retries WHERE entry = ANY(%s)"), (list(set(ids)),)).fetchall()
        return {row[0]: RetryRecord(row[1], row[2], row[3], row[4]) for row in rows}

    def record_retries(self, results: Mapping[str, RetryRecord]) -> None:
        if not results:
            return
        with self.conn.transaction(), self.conn.cursor() as curs:
            curs.execute(self._sql(RETRY_TABLE))
            curs.executemany(self._sql(_UPSERT), [
                (entry, r.outcome, pg_text(r.reason), r.retried_at)
                for entry, r in results.items()])
