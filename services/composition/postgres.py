"""PostgreSQL composition: ``postgresql://`` URL -> eventsourcing datastore -> both stores.

The URL is a libpq URI; one extra query parameter, ``schema`` (default
``public``), names the schema that holds every table. Before the pool is used,
one direct connection checks the server is reachable (failing fast, with one
clear line) and, holding an advisory lock so that concurrent starters do not
race, creates whatever tables are missing.
"""

from __future__ import annotations

import zlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from services.composition.stores import HOW_TO_CREATE, StorageUnavailable, StoreMissing, Stores
from services.conversation.adapters.store_postgres import EVENTS_TABLE, PostgresEventStore
from services.conversation.adapters.store_postgres import TRACKING_TABLE as EVENTS_TRACKING_TABLE
from services.projections.adapters.cells import RELATIONS as CELL_RELATIONS
from services.projections.adapters.store_postgres import TRACKING_TABLE as PROJECTION_TRACKING_TABLE
from services.projections.adapters.store_postgres import PostgresReadModelStore
from services.runtime.pg import DEFAULT_SCHEMA, PostgresTarget

POOL_SIZE = 4
CONNECT_TIMEOUT_SECONDS = 5
#: Every relation the stores need; when all exist, no DDL is run at start.
RELATIONS = (
    EVENTS_TABLE, f"{EVENTS_TABLE}_notification_id_idx", EVENTS_TRACKING_TABLE,
    "processed_events", "dead_letters", PROJECTION_TRACKING_TABLE, "conversations",
    "conversations_ws_opened", "conversations_ws_contact", "conversations_open_contact",
    *CELL_RELATIONS,
)


def parse_url(url: str) -> PostgresTarget:
    """Split our ``schema`` parameter off a libpq URI and parse the rest."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), "") or DEFAULT_SCHEMA
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    try:
        params = conninfo_to_dict(urlunsplit(parts._replace(query=rest)))
    except psycopg.Error as exc:
        raise StorageUnavailable(f"bad database URL: {one_line(exc)}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    return PostgresTarget(params, schema)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def open_datastore(target: PostgresTarget) -> PostgresDatastore:
    """An eventsourcing datastore (pool of ``POOL_SIZE``, opened lazily) for ``target``."""
    p = target.params
    datastore = PostgresDatastore(
        dbname=str(p.get("dbname", "")), host=str(p.get("host", "")),
        port=str(p.get("port", "")), user=str(p.get("user", "")),
        password=str(p.get("password", "")), schema=target.schema, pool_size=POOL_SIZE,
        connect_timeout=float(p["connect_timeout"]), enable_db_functions=False)
    # Keep every libpq keyword of the URL (sslmode, options, ...) but no empty ones.
    datastore.pool.kwargs = {**{k: v for k, v in p.items() if v not in ("", None)},
                             "row_factory": dict_row}
    return datastore


def _prepare_schema(conn: psycopg.Connection[Any], schema: str, create: bool = True) -> str:
    """Take the schema's start-up lock; create the schema; say what is there.

    ``"complete"``: every relation; ``"partial"``: the two tables of a store, not every
    other relation (a store of an older version, before an index or a table was
    added: the stores create the rest even without ``create``); ``"absent"``: no
    store. Without ``create`` nothing is created here.
    """
    key = zlib.crc32(f"bonychat:{schema}".encode())
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if exists is None:
        if not create:
            return "absent"
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))
    quoted = schema.replace('"', '""')
    names = [f'"{quoted}"."{name}"' for name in RELATIONS]
    row = conn.execute("SELECT count(to_regclass(n)), count(to_regclass(n)) FILTER "
                       "(WHERE n = ANY(%s)) FROM unnest(%s::text[]) AS n",
                       ([names[0], names[RELATIONS.index("conversations")]], names)).fetchone()
    if row is not None and row[0] == len(RELATIONS):
        return "complete"
    return "partial" if row is not None and row[1] == 2 else "absent"


def open_postgres_stores(url: str, *, create: bool = True) -> Stores:
    """Open (creating tables if needed) the event store and read model at ``url``.

    Raises :class:`~services.composition.StorageUnavailable` with a one-line reason
    when the server cannot be reached or the tables cannot be created, and
    :class:`~services.composition.StoreMissing` when tables are missing and
    ``create`` is false.
    """
    target = parse_url(url)
    try:
        probe = psycopg.connect(**target.params, autocommit=True)
    except psycopg.Error as exc:
        raise StorageUnavailable(
            f"cannot connect to PostgreSQL {target.describe()}: {one_line(exc)}") from None
    datastore = open_datastore(target)
    try:
        with probe:  # closing it releases the advisory lock
            found = _prepare_schema(probe, target.schema, create)
            if found == "absent" and not create:
                raise StoreMissing(f"no BonyChat tables in PostgreSQL {target.describe()} "
                                   f"schema {target.schema!r}: {HOW_TO_CREATE}")
            missing = found != "complete"
            events = PostgresEventStore(datastore, create_tables=missing)
            read_models = PostgresReadModelStore(datastore, create_tables=missing)
    except (psycopg.Error, PersistenceError) as exc:
        datastore.close()
        raise StorageUnavailable(
            f"cannot prepare PostgreSQL {target.describe()} schema {target.schema!r}: "
            f"{one_line(exc)}") from None
    except BaseException:
        datastore.close()
        raise
    return Stores(events, read_models, datastore.close)
