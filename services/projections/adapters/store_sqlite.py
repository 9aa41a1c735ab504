"""Embedded read model: conversation rows in the same SQLite file as the events."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from operator import attrgetter
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

from services.conversation.application.ports import Position
from services.projections.domain.metrics import Fact, FactWindow, RowWindow
from services.projections.domain.rows import ConversationRow

COLUMNS = (
    "conversation_id", "workspace_id", "contact_id", "channel", "opened_us", "opened_by",
    "closed_us", "closed_by", "closed_by_actor", "assignee_id", "team_id", "category",
    "summary", "messages_received", "messages_sent", "first_message_us", "first_response_us",
    "first_responder_id", "last_activity_us", "recontact",
)
#: columns added after the first release (CONTRACT §6), with their SQL type: an
#: older table gains them at open (run ``bonychat replay`` to fill them)
ADDED_COLUMNS = (("first_message_us", "INTEGER"), ("first_response_us", "INTEGER"),
                 ("first_responder_id", "TEXT"), ("last_activity_us", "INTEGER"),
                 ("recontact", "BOOLEAN"))
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS conversations ("
    "conversation_id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, contact_id TEXT NOT NULL, "
    "channel TEXT, opened_us INTEGER NOT NULL, opened_by TEXT NOT NULL, closed_us INTEGER, "
    "closed_by TEXT, closed_by_actor TEXT, assignee_id TEXT, team_id TEXT, category TEXT, "
    "summary TEXT, messages_received INTEGER NOT NULL, messages_sent INTEGER NOT NULL, "
    "first_message_us INTEGER, first_response_us INTEGER, first_responder_id TEXT, "
    "last_activity_us INTEGER, recontact BOOLEAN)",
    "CREATE INDEX IF NOT EXISTS conversations_ws_opened "
    "ON conversations (workspace_id, opened_us, contact_id)",
    "CREATE INDEX IF NOT EXISTS conversations_ws_contact "
    "ON conversations (workspace_id, contact_id)",
)
#: open conversations by last activity: what the inactivity sweep looks for
INDEX_OPEN = ("CREATE INDEX IF NOT EXISTS conversations_open_activity "
              "ON conversations (workspace_id, last_activity_us) WHERE closed_us IS NULL")
_UPSERT = (
    f"INSERT INTO conversations ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT (conversation_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[6:])
)
FACT_COLUMNS = ("opened_us, closed_us, channel, opened_by, closed_by, assignee_id, team_id, "
                "first_message_us, first_response_us, recontact")
_FACTS = f"SELECT {FACT_COLUMNS} FROM conversations WHERE workspace_id = ?"
#: the columns a RowWindow may name (never SQL from outside)
ROW_WINDOW_COLUMN = {"opened_us": "opened_us", "closed_us": "closed_us"}
#: the facts of a window (metrics.fact_window): a moment in [low, high)
WINDOW = ("(opened_us >= {p} AND opened_us < {p} OR closed_us >= {p} AND closed_us < {p} "
          "OR first_response_us >= {p} AND first_response_us < {p})")
_EXPIRED = ("SELECT DISTINCT contact_id FROM conversations WHERE workspace_id = ? "
            "AND closed_us IS NULL AND last_activity_us <= ? ORDER BY contact_id")
_OPEN_WORKSPACES = ("SELECT DISTINCT workspace_id FROM conversations WHERE closed_us IS NULL "
                    "ORDER BY workspace_id")


row_values: Callable[[ConversationRow], tuple[Any, ...]] = attrgetter(*COLUMNS)


def row_from(values: Sequence[Any]) -> ConversationRow:
    row = ConversationRow(**dict(zip(COLUMNS, values, strict=True)))
    row.recontact = bool(row.recontact)
    return row


def check_after(position: Position, recorded: int) -> None:
    """Compare-and-set guard shared by the read-model stores (see Position.after)."""
    if position.after is not None and recorded != position.after:
        raise IntegrityError(f"projection position {position.name} moved to {recorded} "
                             f"while a batch computed after {position.after} was projected")


class SQLiteReadModelStore:
    """:class:`~services.projections.application.ports.ReadModelStore` on SQLite."""

    def __init__(self, datastore: SQLiteDatastore) -> None:
        self.datastore = datastore
        self.tracking = SQLiteTrackingRecorder(datastore)
        self.tracking.create_table()
        with datastore.transaction(commit=True) as c:
            for statement in SCHEMA:
                c.execute(statement)
            c.execute("PRAGMA table_info(conversations)")
            present = {str(info[1]) for info in c.fetchall()}
            for name, kind in ADDED_COLUMNS:
                if name not in present:
                    c.execute(f"ALTER TABLE conversations ADD COLUMN {name} {kind}")
            c.execute(INDEX_OPEN)

    def load_rows(self, ids: Collection[str]) -> dict[str, ConversationRow]:
        found: dict[str, ConversationRow] = {}
        items = list(ids)
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(items), 900):
                chunk = items[start:start + 900]
                c.execute(f"SELECT {', '.join(COLUMNS)} FROM conversations "
                          f"WHERE conversation_id IN ({', '.join('?' * len(chunk))})", chunk)
                for values in c.fetchall():
                    row = row_from(tuple(values))
                    found[row.conversation_id] = row
        return found

    def save(self, rows: Sequence[ConversationRow], position: Position) -> None:
        with self.datastore.transaction(commit=True) as c:
            if position.after is not None:
                # a no-op write takes the write lock first, so the value read is current
                c.execute("UPDATE tracking SET notification_id = notification_id "
                          "WHERE application_name = ? RETURNING notification_id",
                          (position.name,))
                found = c.fetchone()
                check_after(position, int(found[0]) if found else 0)
            if rows:
                c.executemany(_UPSERT, [row_values(r) for r in rows])
            self.tracking._insert_tracking(c, Tracking(position.name, position.offset))

    def position(self, name: str) -> int | None:
        result: int | None = self.tracking.max_tracking_id(name)
        return result

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM conversations")
            c.execute("DELETE FROM tracking WHERE application_name LIKE 'projection:%'")

    def conversations(self, workspace_id: str, contact_id: str | None = None,
                      status: str | None = None,
                      between: RowWindow | None = None) -> list[ConversationRow]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM conversations WHERE workspace_id = ?"
        params: list[Any] = [workspace_id]
        if between is not None:
            column, low, high = between
            sql += f" AND {ROW_WINDOW_COLUMN[column]} >= ? AND {ROW_WINDOW_COLUMN[column]} < ?"
            params += [low, high]
        if contact_id is not None:
            sql += " AND contact_id = ?"
            params.append(contact_id)
        if status == "open":
            sql += " AND closed_us IS NULL"
        elif status == "closed":
            sql += " AND closed_us IS NOT NULL"
        sql += " ORDER BY opened_us, contact_id, conversation_id"
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [row_from(tuple(v)) for v in c.fetchall()]

    def facts(self, workspace_id: str,
              window: FactWindow | None = None) -> Iterator[Fact]:
        sql, params = _FACTS, list[Any]([workspace_id])
        if window is not None:
            sql += " AND " + WINDOW.format(p="?")
            params += [window[0], window[1]] * 3
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            rows = c.fetchall()
        for values in rows:
            yield Fact(*values)

    def expired_contacts(self, workspace_id: str, last_activity_before_us: int) -> list[str]:
        """Contacts with an open conversation whose last activity is at or before the cut."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(_EXPIRED, (workspace_id, last_activity_before_us))
            return [str(v[0]) for v in c.fetchall()]

    def open_workspaces(self) -> list[str]:
        """Workspaces with at least one open conversation."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(_OPEN_WORKSPACES)
            return [str(v[0]) for v in c.fetchall()]
