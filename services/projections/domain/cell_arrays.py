"""The metric cells of :mod:`.row_cells`, summed with numpy (``bonychat replay``'s workers).

:class:`~.row_cells.CellSums` appends every contribution of every row to a list in a
dict keyed by a 5-tuple: ~1.1 million appends per worker on a 1M-event store, a fifth
of a worker's CPU. :class:`CellArrays` reads each row once (its fields as columns,
its texts as numbers in one table of names) and builds every contribution as arrays;
adding them up is one sort. The rules are :mod:`.row_cells`'s, and
``tests/unit/test_cell_arrays.py`` checks that both give the same cells.

A worker's cells are partial (it holds only its contacts): :meth:`CellArrays.parts`
splits the contributions by cell (:func:`owner_of`, the same in every process forked
from one parent), each part carrying its table of names; :func:`cells_of` adds up the
parts a worker owns (its own and those the others sent it) into stored cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

from services.projections.domain.metrics import UNRESOLVED
from services.projections.domain.row_cells import QUARTER_US, SPAN_US, CellRow
from services.projections.domain.rows import ConversationRow

if TYPE_CHECKING:
    import numpy as np

#: contribution columns: workspace, dim * 4 + kind, key (both as names), slot, value,
#: has a value, is a re-contact
COLUMNS: Final = ("ws", "dk", "key", "slot", "value", "valued", "rc")
_TYPES: Final = ("int64", "int8", "int64", "int64", "int64", "bool", "bool")
#: one part: its names, then the columns
Part = tuple[list[str], dict[str, "np.ndarray[Any, Any]"]]
_FIELDS: Final = attrgetter("workspace_id", "channel", "opened_by", "closed_by",
                            "assignee_id", "team_id", "opened_us", "first_message_us",
                            "first_response_us", "closed_us", "recontact")
#: mixes a cell's parts into its owner (odd 64-bit constants, wrapping)
_MIX: Final = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)


class _Names(dict[str, int]):
    """Text -> number, numbering each new one (``names`` in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __missing__(self, name: str) -> int:
        number = self[name] = len(self.names)
        self.names.append(name)
        return number


class CellArrays:
    """Contributions of the rows added so far, as arrays (one chunk per :meth:`add`)."""

    __slots__ = ("_chunks", "_names")

    def __init__(self) -> None:
        self._names = _Names()
        self._chunks: list[dict[str, np.ndarray[Any, Any]]] = []

    def add(self, rows: Sequence[ConversationRow]) -> None:
        """Add every contribution of ``rows`` (each row once, in its final state)."""
        if not rows:
            return
        import numpy as np

        number = self._names.__getitem__
        (workspace, channel, opened_by, closed_by, assignee, team, opened, first,
         responded, closed, recontact) = zip(*map(_FIELDS, rows), strict=True)
        n = len(rows)

        def names(texts: Iterable[str]) -> np.ndarray[Any, Any]:
            return np.array(list(map(number, texts)), np.int64)

        def moments(values: tuple[int | None, ...]) -> tuple[np.ndarray[Any, Any],
                                                              np.ndarray[Any, Any]]:
            found = np.array(values, object)
            known: np.ndarray[Any, Any] = np.not_equal(found, None)  # type: ignore[call-overload]
            return np.where(known, found, 0).astype(np.int64), known

        ws = names(workspace)
        ch = names([c or "none" for c in channel])
        ob = names(opened_by)
        cb = names([c or "none" for c in closed_by])
        asg = names([a or "unassigned" for a in assignee])
        tm = names([t or "unassigned" for t in team])
        empty = np.full(n, number(""), np.int64)
        resolved = ~np.isin(cb, [number(name) for name in sorted(UNRESOLVED)])
        rc = np.array(recontact, bool)
        at_open = np.array(opened, np.int64)
        first_at, has_first = moments(first)
        responded_at, has_response = moments(responded)
        closed_at, has_closed = moments(closed)
        pieces: list[tuple[np.ndarray[Any, Any] | None, int, np.ndarray[Any, Any],
                           np.ndarray[Any, Any], np.ndarray[Any, Any] | None,
                           np.ndarray[Any, Any] | None]] = []
        quarter, span = at_open - at_open % QUARTER_US, at_open - at_open % SPAN_US
        pieces += [(None, 1, empty, quarter, None, None), (None, 5, ch, span, None, None),
                   (None, 9, ob, span, None, None)]
        took = has_first & has_response
        value = np.maximum(responded_at - first_at, 0)
        quarter, span = (responded_at - responded_at % QUARTER_US,
                         responded_at - responded_at % SPAN_US)
        yes = np.ones(n, bool)
        pieces += [(took, 2, empty, quarter, value, yes), (took, 6, ch, span, value, yes),
                   (took, 10, ob, span, value, yes), (took, 18, asg, span, value, yes),
                   (took, 22, tm, span, value, yes),
                   (took & has_closed, 14, cb, span, value, yes)]
        value = np.maximum(closed_at - at_open, 0)
        quarter, span = (closed_at - closed_at % QUARTER_US,
                         closed_at - closed_at % SPAN_US)
        pieces += [(has_closed, 4 * dim + 3, key, quarter if dim == 0 else span, value,
                    resolved)
                   for dim, key in enumerate((empty, ch, ob, cb, asg, tm))]
        no = np.zeros(n, bool)
        zero = np.zeros(n, np.int64)
        columns: dict[str, list[np.ndarray[Any, Any]]] = {name: [] for name in COLUMNS}
        for mask, dk, key, slot, val, valued in pieces:
            parts = (ws, np.full(n, dk, np.int8), key, slot,
                     zero if val is None else val, no if valued is None else valued, rc)
            for name, column in zip(COLUMNS, parts, strict=True):
                columns[name].append(column if mask is None else column[mask])
        self._chunks.append({name: np.concatenate(found) for name, found in columns.items()})

    def parts(self, parts: int) -> list[Part]:
        """Every contribution so far, split by :func:`owner_of` (part ``i``: the cells
        worker ``i`` adds up), each part with the table of names its numbers refer to."""
        import numpy as np

        names = self._names.names
        if not self._chunks:
            return [(names, {name: np.zeros(0, kind) for name, kind in zip(
                COLUMNS, _TYPES, strict=True)}) for _ in range(parts)]
        every = {name: np.concatenate([chunk[name] for chunk in self._chunks])
                 for name in COLUMNS}
        self._chunks = []
        owner = owner_of(names, every, parts)
        return [(names, {name: column[owner == part] for name, column in every.items()})
                for part in range(parts)]


def owner_of(names: list[str], columns: dict[str, np.ndarray[Any, Any]], parts: int
             ) -> np.ndarray[Any, Any]:
    """Which of ``parts`` workers adds up each contribution's cell: from the hashes of
    its texts, its slot, dimension and kind (the same in processes forked from one
    parent: they share its string hashes)."""
    import numpy as np

    hashes = np.fromiter(map(hash, names), np.int64, len(names)).view(np.uint64)
    with np.errstate(over="ignore"):
        mixed = (hashes[columns["ws"]] * np.uint64(_MIX[0])
                 ^ hashes[columns["key"]] * np.uint64(_MIX[1])
                 ^ (columns["slot"].view(np.uint64) + columns["dk"].astype(np.uint64))
                 * np.uint64(_MIX[2]))
    owners: np.ndarray[Any, Any] = (mixed >> np.uint64(32)) % np.uint64(parts)
    return owners


def cells_of(parts: Iterable[Part]) -> Iterator[CellRow]:
    """The stored cells of the contributions in ``parts`` (each part's numbers refer to
    its own names): durations sorted, 8 bytes each, big-endian (``int8send``)."""
    import numpy as np

    table = _Names()
    columns: dict[str, list[np.ndarray[Any, Any]]] = {name: [] for name in COLUMNS}
    for names, part in parts:
        mine = np.fromiter(map(table.__getitem__, names), np.int64, len(names))
        for name, column in part.items():
            columns[name].append(mine[column] if name in ("ws", "key") and len(mine)
                                 else column)
    every = {name: np.concatenate(found) for name, found in columns.items()}
    if not len(every["ws"]):
        return
    width = np.int64(max(1, len(table.names)))
    series = (every["ws"] * width + every["key"]) * 32 + every["dk"]
    order = np.lexsort((every["value"], every["slot"], series))
    series, slot = series[order], every["slot"][order]
    valued = every["valued"][order]
    starts = np.flatnonzero(np.concatenate(
        ([True], (series[1:] != series[:-1]) | (slot[1:] != slot[:-1]))))
    counts = np.diff(np.append(starts, len(series)))
    recontacts = np.add.reduceat(every["rc"][order].astype(np.int64), starts)
    ends = np.cumsum(np.add.reduceat(valued.astype(np.int64), starts)) * 8
    data = every["value"][order][valued].astype(">i8").tobytes()
    first = series[starts]
    names = table.names
    begin = 0
    for ws, key, dk, at, n, rc, end in zip(
            (first // 32 // width).tolist(), (first // 32 % width).tolist(),
            (first % 32).tolist(), slot[starts].tolist(), counts.tolist(),
            recontacts.tolist(), ends.tolist(), strict=True):
        yield (names[ws], dk >> 2, at, dk & 3, names[key], n, rc, data[begin:end], None,
               None)
        begin = end
