"""The metric cells rebuilt by several PostgreSQL connections at once (``bonychat replay``).

Most of a rebuild is one sort of every row's contributions, and PostgreSQL sorts
on one core per statement (an ``INSERT … SELECT`` gets no parallel workers). After
a parallel replay the cores are free again, so each of ``parts`` connections
rebuilds the cells of one part of the slots (:data:`~.cells.REBUILD_PART`), in a
transaction of its own; the cells are marked ready only once every part is in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
from eventsourcing.postgres import PostgresDatastore

from services.projections.adapters.cells_postgres import PostgresCells
from services.runtime.pg import connection_params


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
