"""The operator queries on the embedded SQLite store.

Opens the file with ``mode=rw``: a missing file is an error, never a new store.
The ``dead_letter_retries`` table is created by the first retry; until then
every dead letter simply has no retry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from schemas.events import DomainEvent, decode_event
from services.conversation.domain.contact import aggregate_id
from services.dead_letters.application.ports import (
    DeadLetterEntry,
    DeadLetterFilter,
    RetryRecord,
    StoredOutcome,
    shown_source,
)

RETRY_TABLE = (
    "CREATE TABLE IF NOT EXISTS dead_letter_retries (entry TEXT PRIMARY KEY, "
    "outcome TEXT NOT NULL, reason TEXT, retried_at TEXT NOT NULL, attempts INTEGER NOT NULL)"
)
_UPSERT = (
    "INSERT INTO dead_letter_retries VALUES (?,?,?,?,1) ON CONFLICT (entry) DO UPDATE SET "
    "outcome = excluded.outcome, reason = excluded.reason, retried_at = excluded.retried_at, "
    "attempts = dead_letter_retries.attempts + 1 WHERE dead_letter_retries.outcome = 'invalid'"
)
_DEAD_LETTER_COLUMNS = "id, received_at, source, workspace_id, event_id, reason, raw"
def stored_time(moment: datetime) -> str:
    """``received_at`` as the table writes it (so text comparison orders correctly)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SQLiteOperationsStore:
    """:class:`~services.dead_letters.application.ports.OperationsStore` on an SQLite file."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        self.path = path
        self.conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=30,
                                    isolation_level=None, check_same_thread=False)

    def close(self) -> None:
        self.conn.close()

    def _has_table(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                (name,)).fetchone()
        return row is not None

    def outcome(self, workspace_id: str, event_id: str) -> StoredOutcome | None:
        if not self._has_table("processed_events"):
            return None
        row = self.conn.execute(
            "SELECT workspace_id, event_id, contact_id, event_type, occurred_at, outcome, reason "
            "FROM processed_events WHERE workspace_id=? AND event_id=?",
            (workspace_id, event_id)).fetchone()
        if row is None:
            return None
        return StoredOutcome(row[0], row[1], row[2], row[3], parse_time(row[4]), row[5], row[6])

    def aggregate_events(self, workspace_id: str, contact_id: str) -> list[DomainEvent]:
        if not self._has_table("stored_events"):
            return []
        rows = self.conn.execute(
            "SELECT state FROM stored_events WHERE originator_id = ? ORDER BY originator_version",
            (aggregate_id(workspace_id, contact_id).hex,)).fetchall()
        return [decode_event(row[0]) for row in rows]

    def merge_events(self, workspace_id: str, event_id: str) -> list[DomainEvent]:
        if not self._has_table("stored_events"):
            return []
        rows = self.conn.execute(
            "SELECT state FROM stored_events WHERE topic='ContactMerged' "
            "AND json_extract(CAST(state AS TEXT), '$.source_event_id') = ? "
            "AND json_extract(CAST(state AS TEXT), '$.workspace_id') = ?",
            (event_id, workspace_id)).fetchall()
        return [decode_event(row[0]) for row in rows]

    def dead_letters(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        if not self._has_table("dead_letters"):
            return []
        clauses: list[str] = []
        params: list[str] = []
        for column, operator, value in where.terms():
            if operator == "in":
                clauses.append(f"{column} IN ({', '.join('?' * len(value))})")
                params.extend(value)
            else:
                clauses.append(f"{column} {operator} ?")
                params.append(stored_time(value) if column == "received_at" else value)
        sql = f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self._entries(self.conn.execute(sql + " ORDER BY id", params).fetchall())

    def dead_letters_by_id(self, ids: Collection[int]) -> list[DeadLetterEntry]:
        if not ids or not self._has_table("dead_letters"):
            return []
        wanted = sorted(set(ids))
        rows = []
        for start in range(0, len(wanted), 900):
            chunk = wanted[start:start + 900]
            rows += self.conn.execute(
                f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters "
                f"WHERE id IN ({', '.join('?' * len(chunk))}) ORDER BY id", chunk).fetchall()
        return self._entries(rows)

    def _entries(self, rows: list[tuple[int, str, str, str | None, str | None, str, str]]
                 ) -> list[DeadLetterEntry]:
        retries = self.retries([str(row[0]) for row in rows])
        return [DeadLetterEntry(str(row[0]), parse_time(row[1]), shown_source(row[2]), row[5],
                                row[6], row[3], row[4], retry=retries.get(str(row[0])))
                for row in rows]

    def retries(self, ids: Collection[str]) -> dict[str, RetryRecord]:
        if not ids or not self._has_table("dead_letter_retries"):
            return {}
        wanted = list(set(ids))
        found: dict[str, RetryRecord] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start:start + 900]
            for entry, outcome, reason, at, attempts in self.conn.execute(
                    "SELECT entry, outcome, reason, retried_at, attempts FROM "
                    f"dead_letter_retries WHERE entry IN ({', '.join('?' * len(chunk))})",
                    chunk):
                found[entry] = RetryRecord(outcome, reason, parse_time(at), attempts)
        return found

    def record_retries(self, results: Mapping[str, RetryRecord]) -> None:
        if not results:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(RETRY_TABLE)
            conn.executemany(_UPSERT, [(entry, r.outcome, r.reason, r.retried_at.isoformat())
                                       for entry, r in results.items()])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
