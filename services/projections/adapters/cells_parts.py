"""The metric cells rebuilt by several PostgreSQL connections at once (``bonychat replay``).

Most of a rebuild is one sort of every row's contributions, and PostgreSQL sorts
on one core per statement (an ``INSERT … SELECT`` gets no parallel workers). After
a parallel replay the cores are free again, so each of ``parts`` connections
rebuilds the cells of one part of the slots (:data:`~.cells.REBUILD_PART`), in a
transaction of its own; the cells are marked ready only once every part is in.

:func:`write_summed` writes cells summed outside PostgreSQL instead (by the replay's
workers, :mod:`~services.projections.domain.row_cells`), with binary ``COPY``;
:func:`copy_part` writes one disjoint part of them (each replay worker the cells it
owns, at once, each in a transaction of its own), and :func:`mark_ready` marks the
cells ready once every part is in.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import psycopg
from eventsourcing.postgres import PostgresDatastore

from services.projections.adapters.cells import COLUMNS
from services.projections.adapters.cells_postgres import PostgresCells
from services.projections.domain.row_cells import CellRow
from services.runtime.pg import connection_params, sql

_COPY: Final = f"COPY {{schema}}.metric_cells ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES: Final = ["text", "int2", "int8", "int2", "text", "int4", "int4", "bytea", "text",
                      "bytea"]


def rebuild_in_parts(cells: PostgresCells, datastore: PostgresDatastore, parts: int) -> None:
    """Empty the cells, rebuild them in ``parts`` at once, mark them ready.

    Raises the first part's :class:`psycopg.Error` (the cells then stay not ready:
    the caller rebuilds them in one transaction, or the next metrics query does).
    """
    with datastore.transaction(commit=True) as curs:
        cells.empty(curs)

    def part(number: int) -> None:
        with psycopg.connect(**connection_params(datastore)) as conn, conn.cursor() as curs:
            cells.rebuild_part(curs, number, parts)

    with ThreadPoolExecutor(parts, thread_name_prefix="cells") as pool:
        for done in [pool.submit(part, number) for number in range(parts)]:
            done.result()
    with datastore.transaction(commit=True) as curs:
        curs.execute(cells.set_state, (True,))


def write_summed(cells: PostgresCells, datastore: PostgresDatastore,
                 rows: Iterable[CellRow]) -> None:
    """Replace every cell by ``rows`` and mark the cells ready, in one transaction.

    Raises eventsourcing's ``PersistenceError`` (nothing changed), for instance for a
    key holding a NUL, which the rows' text columns store replaced (the caller then
    rebuilds the cells from the rows).
    """
    with datastore.transaction(commit=True) as curs:
        cells.lock(curs)
        curs.execute(cells.truncate)
        with curs.copy(sql(_COPY, datastore.schema)) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        curs.execute(cells.set_state, (True,))


def copy_part(cells: PostgresCells, datastore: PostgresDatastore,
              rows: Iterable[CellRow]) -> int:
    """Add ``rows`` (cells no other part holds) on a connection of its own (a forked
    replay worker's), in one transaction under the cells' shared lock, as
    :meth:`~.cells_postgres.PostgresCells.rebuild_part` does; returns how many.

    The cells stay marked not ready (the replay's rows copies marked them so) until
    :func:`mark_ready`. Raises :class:`psycopg.Error` (this part then wrote nothing).
    """
    written = 0
    with psycopg.connect(**connection_params(datastore)) as conn, conn.cursor() as curs:
        curs.execute("SELECT pg_advisory_xact_lock_shared(%s)", (cells.lock_key,))
        with curs.copy(sql(_COPY, datastore.schema)) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
                written += 1
    return written


def mark_ready(cells: PostgresCells, datastore: PostgresDatastore) -> None:
    """Every part of the cells is in (:func:`copy_part`): mark them ready."""
    with datastore.transaction(commit=True) as curs:
        cells.lock(curs)
        curs.execute(cells.set_state, (True,))
