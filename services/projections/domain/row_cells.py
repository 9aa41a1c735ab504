"""Metric cells summed from conversation rows in Python (``bonychat replay``'s workers).

The same cells as PostgreSQL's rebuild (``adapters/cells.py``, ``REBUILD``) computes
from the rows, so that a parallel replay's workers can sum them while they project
instead of PostgreSQL sorting every contribution afterwards. A worker sees only its
partition of the contacts, so its cells are partial: :func:`merged_rows` adds the
workers' parts (:meth:`CellSums.summed`) together. The replay's workers use
:class:`~.cell_arrays.CellArrays`, the same rules with numpy (checked against this
reference by ``tests/unit/test_cell_arrays.py``). Per conversation row (the SQL's
rules, written again here and checked against it by
``tests/integration/test_sql_metrics.py``):

- kind 1 (opened) at ``opened_us``: dimension 0 and keys ``channel``, ``opened_by``;
- kind 2 (first response) at ``first_response_us`` when ``first_message_us`` is set,
  duration ``max(0, first_response - first_message)``: dimension 0 and keys
  ``channel``, ``opened_by``, ``closed_by`` (closed rows only), ``assignee``, ``team``;
- kind 3 (closed) at ``closed_us``, duration ``max(0, closed - opened)`` unless the
  closing does not count as resolved (:data:`~.metrics.UNRESOLVED`): dimension 0 and
  the five keys;

dimension 0 in quarter-hour UTC slots, the keys in six-hour slots; ``rc`` counts
re-contacts. Business durations stay unset (a replayed row has no cached schedule).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Final

from services.projections.domain.metrics import UNRESOLVED
from services.projections.domain.rows import ConversationRow

QUARTER_US: Final = 900_000_000
SPAN_US: Final = 6 * 3_600_000_000
#: workspace, dimension, slot start (µs), kind, key
CellKey = tuple[str, int, int, int, str]
#: a cell's stored columns: workspace_id, dim, slot, kind, key, n, rc, vals, bkey, bvals
CellRow = tuple[str, int, int, int, str, int, int, bytes, None, None]
#: a part's cells: key -> (contributions, re-contacts, durations sorted)
Summed = dict[CellKey, tuple[int, int, list[int]]]


class CellSums:
    """Cells being summed: :attr:`cells` maps a cell to one entry per contribution (its
    duration, or None), :attr:`recontacts` a cell to its re-contacts (when any)."""

    __slots__ = ("cells", "recontacts")

    def __init__(self) -> None:
        self.cells: defaultdict[CellKey, list[int | None]] = defaultdict(list)
        self.recontacts: dict[CellKey, int] = {}

    def add(self, rows: Iterable[ConversationRow]) -> None:
        """Add every contribution of ``rows`` (each row once, in its final state)."""
        cells = self.cells
        for row in rows:
            w = row.workspace_id
            channel = row.channel or "none"
            opened_by = row.opened_by
            moment = row.opened_us
            slot = moment - moment % SPAN_US
            keys: list[CellKey] = [(w, 0, moment - moment % QUARTER_US, 1, ""),
                                   (w, 1, slot, 1, channel), (w, 2, slot, 1, opened_by)]
            for key in keys:
                cells[key].append(None)
            closed = row.closed_us
            assignee = row.assignee_id or "unassigned"
            team = row.team_id or "unassigned"
            responded, first = row.first_response_us, row.first_message_us
            if responded is not None and first is not None:
                value: int | None = max(0, responded - first)
                slot = responded - responded % SPAN_US
                more = [(w, 0, responded - responded % QUARTER_US, 2, ""),
                        (w, 1, slot, 2, channel), (w, 2, slot, 2, opened_by),
                        (w, 4, slot, 2, assignee), (w, 5, slot, 2, team)]
                if closed is not None:
                    more.append((w, 3, slot, 2, row.closed_by or "none"))
                for key in more:
                    cells[key].append(value)
                keys += more
            if closed is not None:
                value = None if row.closed_by in UNRESOLVED else max(0, closed - moment)
                slot = closed - closed % SPAN_US
                more = [(w, 0, closed - closed % QUARTER_US, 3, ""),
                        (w, 1, slot, 3, channel), (w, 2, slot, 3, opened_by),
                        (w, 3, slot, 3, row.closed_by or "none"),
                        (w, 4, slot, 3, assignee), (w, 5, slot, 3, team)]
                for key in more:
                    cells[key].append(value)
                keys += more
            if row.recontact is True:
                counts = self.recontacts
                for key in keys:
                    counts[key] = counts.get(key, 0) + 1

    def summed(self) -> Summed:
        """The cells so far, each with its durations sorted (a worker's part, to send)."""
        recontacts = self.recontacts.get
        return {key: (len(entries), recontacts(key, 0),
                      [] if key[3] == 1 else sorted([v for v in entries if v is not None]))
                for key, entries in self.cells.items()}


def merged_rows(parts: Iterable[Summed]) -> Iterator[CellRow]:
    """The cells of every part added together, as stored: durations sorted, 8 bytes
    each, big-endian (``int8send``)."""
    total: Summed = {}
    get = total.get
    for part in parts:
        for key, cell in part.items():
            mine = get(key)
            total[key] = cell if mine is None else (
                mine[0] + cell[0], mine[1] + cell[1], mine[2] + cell[2])
    pack = struct.pack
    for key, (n, rc, values) in total.items():
        values.sort()  # runs already sorted (summed) are merged in linear time
        yield (*key, n, rc, pack(f">{len(values)}q", *values), None, None)
