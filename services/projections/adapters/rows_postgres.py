"""The conversation rows' table of the PostgreSQL read model (:mod:`.store_postgres`):
its schema, its statements and how rows are encoded for them.

Templates with ``{schema}`` filled in by ``services.runtime.pg.sql``. Rows are
upserted with one statement that takes them as one JSON array of row arrays
(``orjson`` writes it in C, where psycopg's array dumpers walk every value in
Python), or, for a value JSON cannot carry as it is (a NUL in a text, a lone
surrogate, a huge integer), as one array per column (``unnest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Any

from services.projections.adapters.cells import TABLE_DDL
from services.projections.adapters.store_sqlite import ADDED_COLUMNS, COLUMNS, FACT_COLUMNS
from services.projections.domain.rows import ConversationRow
from services.runtime.pg import pg_json, pg_text

_TYPES = {"opened_us": "bigint", "closed_us": "bigint", "messages_received": "integer",
          "messages_sent": "integer", "first_message_us": "bigint",
          "first_response_us": "bigint", "last_activity_us": "bigint", "recontact": "boolean"}
#: per cent of each heap page the rows fill; the rest takes HOT updates of them
FILLFACTOR = 80
_TEXT_COLUMNS = frozenset(c for c in COLUMNS if c not in _TYPES)
_GETTERS = [(name, attrgetter(name)) for name in COLUMNS]
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {schema}.conversations ("
    # ids sort bytewise ("C"), like SQLite, whatever the database's default collation
    'conversation_id text COLLATE "C" PRIMARY KEY, workspace_id text COLLATE "C" NOT NULL, '
    'contact_id text COLLATE "C" NOT NULL, '
    "channel text, opened_us bigint NOT NULL, opened_by text NOT NULL, closed_us bigint, "
    "closed_by text, closed_by_actor text, assignee_id text, team_id text, category text, "
    "summary text, messages_received integer NOT NULL, messages_sent integer NOT NULL, "
    "first_message_us bigint, first_response_us bigint, first_responder_id text, "
    "last_activity_us bigint, recontact boolean)",
    *(f"ALTER TABLE {{schema}}.conversations ADD COLUMN IF NOT EXISTS {name} "
      f"{'boolean' if kind == 'BOOLEAN' else 'bigint' if kind == 'INTEGER' else 'text'}"
      for name, kind in ADDED_COLUMNS),
    # No index holds a column a message changes (last_activity_us, the counters,
    # first_message_us), so the upsert of a conversation a message touched is a HOT
    # update (no index entry written); the free space left on each page is where it goes.
    "DROP INDEX IF EXISTS {schema}.conversations_open_activity",
    "CREATE INDEX IF NOT EXISTS conversations_open_contact "
    "ON {schema}.conversations (workspace_id, contact_id) WHERE closed_us IS NULL",
    f"ALTER TABLE {{schema}}.conversations SET (fillfactor = {FILLFACTOR})",
    "CREATE INDEX IF NOT EXISTS conversations_ws_opened "
    "ON {schema}.conversations (workspace_id, opened_us, contact_id)",
    "CREATE INDEX IF NOT EXISTS conversations_ws_contact "
    "ON {schema}.conversations (workspace_id, contact_id)",
    # business durations cached for the schedule ``bkey`` (metric cells, .cells_postgres)
    "ALTER TABLE {schema}.conversations ADD COLUMN IF NOT EXISTS bkey text",
    "ALTER TABLE {schema}.conversations ADD COLUMN IF NOT EXISTS response_bus_us bigint",
    "ALTER TABLE {schema}.conversations ADD COLUMN IF NOT EXISTS resolution_bus_us bigint",
    *TABLE_DDL,
)
CONFLICT = (
    " ON CONFLICT (conversation_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[6:])  # as SQLite: the rest is fixed
    + ", bkey = NULL"  # the cached business durations may be out of date
)
SQL_UPSERT = (
    f"INSERT INTO {{schema}}.conversations ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%b::{_TYPES.get(c, 'text')}[]" for c in COLUMNS) + ")" + CONFLICT
)
_CASTS = [f"(r->>{i})::{_TYPES.get(c, 'text')}" for i, c in enumerate(COLUMNS)]


def json_insert(rows: str) -> str:
    """The insert of conversation rows from ``rows``, a JSON array of row arrays (values
    in COLUMNS order), each as ``r``: the statements' parameter, or the page function's."""
    return (f"INSERT INTO {{schema}}.conversations ({', '.join(COLUMNS)}) SELECT "
            + ", ".join(_CASTS) + f" FROM jsonb_array_elements({rows}) AS r")


def stored_moments_of(key: str) -> str:
    """``c``: the stored row whose id is ``key``, if any, with the moments its metric
    units come from (looked up by the primary key, ``LATERAL … LIMIT 1``)."""
    return ("CROSS JOIN LATERAL (SELECT conversation_id, workspace_id, opened_us, "
            "first_message_us, first_response_us, closed_us FROM {schema}.conversations "
            f"WHERE conversation_id = {key} LIMIT 1) AS c")


#: the same upsert, the rows as one JSON array of row arrays (values in COLUMNS order)
SQL_UPSERT_JSON = json_insert("%s::jsonb") + CONFLICT
#: rows known to be new (not stored), as SQL_UPSERT_JSON takes them: a plain insert,
#: where the upsert's is a speculative one (it checks the key first, then writes the
#: row and confirms it: a second WAL record per row). Stored rows keep the upsert: an
#: ``UPDATE … FROM`` the JSON measured no cheaper, and its plan depends on the table's
#: statistics where the upsert always finds them by the key
SQL_INSERT_JSON = json_insert("%s::jsonb")
#: which of a page's rows are stored, and the moments their metric units come from; each
#: id looked up by the primary key (LATERAL … LIMIT 1), whatever the table's size: as
#: ``= ANY``, a generic plan made while the table was small kept scanning it whole
SQL_STORED_MOMENTS = "SELECT c.* FROM unnest(%s::text[]) AS k(id) " + stored_moments_of("k.id")
#: what units_of takes, out of a row's values in COLUMNS order
UNIT_VALUES = itemgetter(*(COLUMNS.index(name) for name in (
    "workspace_id", "opened_us", "first_message_us", "first_response_us", "closed_us")))
SQL_COPY = f"COPY {{schema}}.conversations ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = [_TYPES.get(name, "text") for name in COLUMNS]
ROW_VALUES = attrgetter(*COLUMNS)
SQL_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {{schema}}.conversations"
SQL_FACTS = f"SELECT {FACT_COLUMNS} FROM {{schema}}.conversations WHERE workspace_id = %s"
SQL_EXPIRED = ("SELECT DISTINCT contact_id FROM {schema}.conversations WHERE workspace_id = %s "
            "AND closed_us IS NULL AND last_activity_us <= %s ORDER BY contact_id")
SQL_OPEN_WORKSPACES = ("SELECT DISTINCT workspace_id FROM {schema}.conversations "
                    "WHERE closed_us IS NULL ORDER BY workspace_id")


def column_arrays(rows: Sequence[ConversationRow]) -> list[list[Any]]:
    """One list per column (text made storable), for the ``unnest`` upsert.

    The lists are a snapshot: the rows may change afterwards without changing them.
    """
    arrays: list[list[Any]] = []
    for name, get in _GETTERS:
        values = list(map(get, rows))
        if name in _TEXT_COLUMNS and "\x00" in "".join(filter(None, values)):
            values = [pg_text(v) for v in values]  # rare: only then look at each value
        arrays.append(values)
    return arrays


def rows_json(values: Sequence[tuple[Any, ...]]) -> str | None:
    """Row values as the JSON :data:`SQL_UPSERT_JSON` takes; None when JSON cannot carry
    them as they are (a NUL in a text, a lone surrogate, an integer over 64 bits): the
    ``unnest`` upsert then stores them, as it always did."""
    return pg_json(values)
