"""The conversations' secondary indexes, dropped while a replay copies every row in bulk.

Profiled on the 1M-event store (212k rows): ``COPY`` of the rows cost PostgreSQL
2.9 s of CPU with the five secondary indexes, 0.9 s with the primary key alone, and
building the five afterwards 0.7 s -- about a fifth of a replay's CPU, on a machine
whose two cores the replay keeps busy. So ``bonychat replay``'s partitioned path
drops them (:func:`drop`) before its workers copy the rows and builds them again
(:func:`create`, several connections at once) once every row is in. The statements
are the schema's own (:data:`~.rows_postgres.SCHEMA`); if a replay dies in between,
the next start finds the schema incomplete and creates them (``CREATE INDEX IF NOT
EXISTS``, :mod:`services.composition.postgres`).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import psycopg
from eventsourcing.postgres import PostgresDatastore

from services.projections.adapters.rows_postgres import SCHEMA
from services.runtime.pg import connection_params, sql

#: (name, CREATE statement) of every index on the rows but the primary key
SECONDARY: Final = tuple(
    (found.group(1), statement) for statement in SCHEMA
    if (found := re.match(r"CREATE INDEX IF NOT EXISTS (\w+) ON \{schema\}\.conversations ",
                          statement)))


def drop(datastore: PostgresDatastore) -> None:
    """Drop the secondary indexes (the rows must be empty: just reset)."""
    with datastore.transaction(commit=True) as curs:
        for name, _ in SECONDARY:
            curs.execute(sql(f"DROP INDEX IF EXISTS {{schema}}.{name}", datastore.schema))


def create(datastore: PostgresDatastore, parts: int) -> None:
    """Build the secondary indexes again, on ``parts`` connections at once (``CREATE
    INDEX`` takes a lock that does not exclude another one's)."""

    def build(statements: tuple[str, ...]) -> None:
        with psycopg.connect(**{**connection_params(datastore), "autocommit": True}) as conn:
            conn.execute("SET maintenance_work_mem = '128MB'")
            for statement in statements:
                conn.execute(sql(statement, datastore.schema))

    shares = [tuple(s for _, s in SECONDARY[part::parts]) for part in range(max(1, parts))]
    with ThreadPoolExecutor(len(shares), thread_name_prefix="indexes") as pool:
        for done in [pool.submit(build, share) for share in shares if share]:
            done.result()
