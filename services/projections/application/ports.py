"""What the projections need from storage (SQLite embedded, PostgreSQL in production).

:class:`ReadModelStore` is what every store does; what only some can do is a
capability Protocol (:class:`RowCopier`, :class:`SnapshotSaver`,
:class:`MetricsAggregator`, :class:`CellKeeper`, :class:`PageCounter`), checked once
where the code that uses it is built.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from services.conversation.application.ports import Position
from services.projections.domain.metrics import Fact, FactWindow, MetricsQuery, RowWindow
from services.projections.domain.row_cells import CellRow
from services.projections.domain.rows import ConversationRow
from services.projections.domain.service_levels import Schedule


class ReadModelStore(Protocol):
    """Conversation rows plus the projection's tracked positions."""

    def load_rows(self, ids: Collection[str]) -> dict[str, ConversationRow]:
        ...

    def save(self, rows: Sequence[ConversationRow], position: Position) -> None:
        """Upsert rows and record ``position`` in one transaction."""
        ...

    def position(self, name: str) -> int | None:
        ...

    def reset(self) -> None:
        """Forget every row and every projection position (before a replay)."""
        ...

    def conversations(self, workspace_id: str, contact_id: str | None = None,
                      status: str | None = None,
                      between: RowWindow | None = None) -> list[ConversationRow]:
        """Rows sorted by ``opened_at`` then ``contact_id``; ``between``: only rows whose
        ``opened_us`` / ``closed_us`` is in ``[low, high)``."""
        ...

    def facts(self, workspace_id: str, window: FactWindow | None = None) -> Iterable[Fact]:
        """The workspace's facts; with ``window``, only those with a moment in it
        (:func:`~services.projections.domain.metrics.in_window`), a superset of what counts."""
        ...

    def expired_contacts(self, workspace_id: str, last_activity_before_us: int) -> list[str]:
        """Contacts with an open conversation whose last activity is at or before the cut
        (the inactivity sweep's candidates; the aggregate decides)."""
        ...

    def open_workspaces(self) -> list[str]:
        """Workspaces with at least one open conversation."""
        ...


# -- capabilities: what only some stores can do (PostgreSQL) ---------------------------

@runtime_checkable
class RowCopier(Protocol):
    """Inserts rows that are not in the table yet in bulk (a replay's, with ``COPY``)."""

    def copy_rows(self, rows: Sequence[ConversationRow]) -> None:
        ...


@runtime_checkable
class SnapshotSaver(Protocol):
    """Copies rows' values now and saves the copy later (on another thread)."""

    def snapshot(self, rows: Sequence[ConversationRow]) -> list[tuple[Any, ...]]:
        """What ``save`` writes for ``rows`` (one per conversation), copied (the rows may
        change meanwhile)."""
        ...

    def save_snapshot(self, values: list[tuple[Any, ...]], position: Position, *,
                      new: Collection[str] = ()) -> None:
        """Upsert a :meth:`snapshot` and record ``position``, in one transaction.

        ``new``: ids of rows the projection started in this page (their opening is in
        it), so not stored, as far as it knows: they need not be looked up first. The
        store must still write the right rows if one of them is stored after all."""
        ...


@runtime_checkable
class MetricsAggregator(Protocol):
    """Aggregates the metrics in the database (None: only the Python reference is exact)."""

    def aggregate_metrics(self, query: MetricsQuery, window: FactWindow | None = None,
                          schedule: Schedule | None = None) -> dict[str, Any] | None:
        """``schedule``: the workspace's business hours in force (None: always open)."""
        ...


@runtime_checkable
class CellKeeper(Protocol):
    """Keeps metric cells derived from the rows: rebuilt after rows were copied in bulk."""

    def rebuild_cells(self, parts: int = 1) -> None:
        """``parts``: how many connections rebuild the cells at once."""
        ...

    def write_cells(self, cells: Iterable[CellRow]) -> None:
        """Replace every cell by ``cells`` (summed from the rows copied) and mark them
        ready, in one transaction; on any error nothing changes."""
        ...

    def copy_cells(self, cells: Iterable[CellRow]) -> int:
        """Add one part of the cells (no other part holds them: a replay worker's), on a
        connection of its own, in one transaction; returns how many. The cells are not
        ready until :meth:`cells_ready`."""
        ...

    def cells_ready(self) -> None:
        """Every part of the cells is in (:meth:`copy_cells`): mark them ready."""
        ...


@runtime_checkable
class DeferredIndexes(Protocol):
    """Drops the rows' secondary indexes while a replay copies every row in bulk."""

    def drop_indexes(self) -> None:
        """The rows are empty (just reset): drop every index but the primary key."""
        ...

    def create_indexes(self, parts: int = 1) -> None:
        """Every row is in: build the dropped indexes, ``parts`` connections at once."""
        ...


@runtime_checkable
class PageCounter(Protocol):
    """Counts and pages the Dashboard's and the drill-down's rows in the database."""

    def open_overview(self, workspace_id: str, longest: int
                      ) -> tuple[dict[str, Any], list[ConversationRow]]:
        """Counts of the open conversations and the ``longest`` waiting ones."""
        ...

    def hourly_counts(self, workspace_id: str, tz: str, start_us: int,
                      end_us: int) -> list[dict[str, Any]]:
        """Opened and closed per local hour of ``[start, end)``."""
        ...

    def conversation_page(self, workspace_id: str, where: str, params: list[Any],
                          offset: int, limit: int | None
                          ) -> tuple[int, list[ConversationRow]]:
        """``(total, rows)`` of the rows matching ``where``, one page."""
        ...
