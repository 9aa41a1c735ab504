"""Writes a catch-up's pages in a background thread, in order (:meth:`.projector.
ConversationProjection.catch_up`): page N's rows are written while page N+1 is projected."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from services.conversation.application.ports import Position
from services.projections.application.ports import ReadModelStore, SnapshotSaver
from services.projections.domain.rows import ConversationRow


class OrderedWriter:
    """Saves pages in a background thread, one at a time and in order.

    A :class:`~.ports.SnapshotSaver` store (PostgreSQL) gets the rows' values
    copied on the caller's thread, so the caller can go on projecting (and
    changing the same row objects) while the previous page is written. Other
    stores are written synchronously.
    """

    def __init__(self, store: ReadModelStore, snapshots: SnapshotSaver | None) -> None:
        self.store = store
        self._snapshots = snapshots
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="writer") \
            if snapshots is not None else None
        self._pending: Future[None] | None = None

    def save(self, rows: Sequence[ConversationRow], position: Position,
             new: Collection[str] = ()) -> None:
        if self._pool is None or self._snapshots is None:
            self.store.save(rows, position)
            return
        snapshot = self._snapshots.snapshot(rows)
        self.wait()  # surfaces the previous page's failure before going on
        self._pending = self._pool.submit(self._snapshots.save_snapshot, snapshot, position,
                                          new=new)

    def load_rows(self, ids: set[str]) -> dict[str, ConversationRow]:
        self.wait()  # read what the previous pages wrote
        return self.store.load_rows(ids)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def flush(self) -> None:
        try:
            self.wait()
        finally:
            self.abandon()

    def abandon(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
