"""The metric cells of a partitioned replay, added up and written by the workers themselves.

Each worker gathers the contributions of the rows it writes to the metric cells
(:class:`~..domain.cell_arrays.CellArrays`); its contacts are only part of every
workspace's, so most cells have a part in every worker. Instead of sending every
part to the parent, which added them on one core after the workers were done, the
contributions are split by cell (:func:`~..domain.cell_arrays.owner_of`): worker ``i``
sends the other workers the parts they own (on threads, so no two workers wait on
each other's pipes), receives its own from each of them, adds them up and copies
them in a transaction of its own (:meth:`~.ports.CellKeeper.copy_cells`), at the
same time as the others. Every cell is written by exactly one worker, once. The
parent hears from each worker whether its cells are in; it marks the cells ready
only when all are, and rebuilds them from the rows otherwise.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from services.projections.application.ports import CellKeeper
from services.projections.domain.cell_arrays import CellArrays, Part, cells_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellsLink:
    """A worker's pipes for the cells: from and to every other worker, and to the parent."""

    part: int
    parts: int
    keeper: CellKeeper
    parent: Connection
    inbox: tuple[Connection, ...]
    outbox: tuple[tuple[int, Connection], ...]


def links(context: Any, parts: int, keeper: CellKeeper
          ) -> tuple[list[CellsLink], list[Connection], list[Connection]]:
    """One :class:`CellsLink` per worker; the parent's ends of the pipes to the parent,
    and every end the parent must close once the workers are started."""
    between = {(i, j): context.Pipe(duplex=False)
               for i in range(parts) for j in range(parts) if i != j}
    to_parent = [context.Pipe(duplex=False) for _ in range(parts)]
    made = [CellsLink(part, parts, keeper, to_parent[part][1],
                      tuple(between[i, part][0] for i in range(parts) if i != part),
                      tuple((j, between[part, j][1]) for j in range(parts) if j != part))
            for part in range(parts)]
    theirs = [end for pair in between.values() for end in pair]
    theirs += [pipe[1] for pipe in to_parent]
    return made, [pipe[0] for pipe in to_parent], theirs


def keep_own_ends(link: CellsLink, ends: list[Connection]) -> None:
    """In a worker: close the ends of the other workers' pipes it inherited (``ends``:
    every end the parent closes), so that a worker that dies ends its pipes."""
    own = {id(link.parent), *map(id, link.inbox), *(id(conn) for _, conn in link.outbox)}
    for conn in ends:
        if id(conn) not in own:
            conn.close()


def write_own(sums: CellArrays, link: CellsLink) -> None:
    """Exchange the parts with the other workers, copy the cells this worker owns, and
    tell the parent whether they are in (a failed copy wrote nothing: the parent then
    rebuilds every cell from the rows). A worker that died before sending its parts
    ends this one too (EOF): the parent replays in one process."""
    split = sums.parts(link.parts)
    mine: list[Part] = [split[link.part]]
    with ThreadPoolExecutor(max(1, len(link.outbox)), thread_name_prefix="cells") as senders:
        sent = [senders.submit(conn.send, split[to]) for to, conn in link.outbox]
        pending = list(link.inbox)
        while pending:
            for conn in wait(pending):
                assert isinstance(conn, Connection)
                pending.remove(conn)
                mine.append(conn.recv())
        for done in sent:
            done.result()
    del split
    try:
        written: int | None = link.keeper.copy_cells(cells_of(mine))
    except Exception as exc:  # the parent's rebuild from the rows is exact
        log.warning("copying replay worker %d's metric cells failed (%s)", link.part, exc)
        written = None
    link.parent.send(written)
    link.parent.close()
