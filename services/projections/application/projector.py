"""Runs the conversation projection: events in, rows and a tracked position out.

Two ways in, same rows out:

- :meth:`ConversationProjection.apply` takes domain events (the embedded
  pipeline projects what it has just decided);
- :meth:`ConversationProjection.apply_stored` takes the event store's JSON as
  it is stored (the projections service, ``catch_up`` and ``bonychat replay``
  on PostgreSQL). Building a pydantic model per event costs about four times
  what the projection itself does, so a row written by the current
  ``encode_event`` (current ``schema_version``, exactly the class's fields) is
  decoded by msgspec into its struct (:func:`.rows.stored_item`, the replay
  workers' :func:`~schemas.stored_rows.row_event`) and projected by
  :func:`.rows.project_payload` (the same rules as :func:`.rows.project`,
  written once); any other row is decoded (and upcast) with ``decode_event`` and
  goes through ``project``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from operator import itemgetter

from schemas.events import ConversationOpened, DomainEvent
from schemas.stored_rows import RowEvent
from services.conversation.application.ports import (
    EventStore,
    PartitionedEventReader,
    Position,
    RawEventReader,
)
from services.projections.application.ordered_writer import OrderedWriter
from services.projections.application.ports import (
    CellKeeper,
    ReadModelStore,
    RowCopier,
    SnapshotSaver,
)
from services.projections.domain.rows import (
    ConversationRow,
    Item,
    apply_fields,
    conversation_of,
    project,
    project_payload,
    stored_item,
)

log = logging.getLogger(__name__)
EVENT_STORE_POSITION = "projection:conversations"
_STATE = itemgetter(1)  # the stored JSON of a ``read_raw`` pair


class ConversationProjection:
    """Applies domain events to conversation rows, caching the open ones."""

    def __init__(self, store: ReadModelStore, *, cache_size: int = 200_000,
                 on_closed: Callable[[list[ConversationRow]], None] | None = None) -> None:
        self.store = store
        #: the store's capability of saving a page while the next is projected
        self._snapshots = store if isinstance(store, SnapshotSaver) else None
        self.cache_size = cache_size
        #: told about the rows this projection closed, once they are saved (for metrics)
        self.on_closed = on_closed
        self._open: dict[str, ConversationRow] = {}
        #: position name -> the recorded position the cached rows are current for
        self._cached_at: dict[str, int] = {}

    def forget(self) -> None:
        """Drop cached rows (after a rebalance or a failed write)."""
        self._open.clear()
        self._cached_at.clear()

    def _check_cache(self, name: str, recorded: int) -> None:
        """Another process projected since our last save: our cached rows are stale."""
        if self._cached_at.get(name, recorded) != recorded:
            self.forget()

    def apply(self, events: Sequence[DomainEvent], position: Position) -> int:
        """Project a batch and record ``position`` with it; returns rows written."""
        return self._apply(events, position)

    def apply_stored(self, states: Sequence[bytes], position: Position) -> int:
        """:meth:`apply` for events as the store holds them (JSON bytes, in order)."""
        return self._apply(map(stored_item, states), position)

    def apply_read(self, page: Sequence[tuple[int, bytes]], position: Position) -> int:
        """:meth:`apply_stored` for a page as ``read_raw`` gives it: ``(id, JSON)`` pairs
        (no list of the states in between). Each event is decoded as the projection
        comes to it, and freed once applied (no list of the page's decoded events)."""
        return self._apply(map(stored_item, map(_STATE, page)), position)

    def _apply(self, items: Iterable[Item], position: Position) -> int:
        fresh: set[str] = set()
        try:
            # cached rows change in place as the page goes: a page that fails half-way
            # (an event that cannot be decoded or applied, a failed write) drops them
            changed = self._project(items, self.store.load_rows, fresh)
            if self._snapshots is not None:
                self._snapshots.save_snapshot(self._snapshots.snapshot(changed), position,
                                              new=fresh)
            else:
                self.store.save(changed, position)
        except BaseException:
            self.forget()
            raise
        self._remember(changed)
        self._cached_at[position.name] = position.offset
        return len(changed)

    def _project(self, items: Iterable[Item],
                 load_rows: Callable[[set[str]], dict[str, ConversationRow]],
                 fresh: set[str] | None = None) -> list[ConversationRow]:
        """Apply ``items`` to their rows (cached, else loaded); the rows that changed.

        A conversation whose first event here is its opening needs no stored row
        (``project`` starts a new one), so only the others are loaded. Those rows,
        started here, are added to ``fresh``: the store need not look them up before
        writing them (:meth:`~.ports.SnapshotSaver.save_snapshot`'s ``new``).

        One pass while every conversation's row is cached or opened here (a backlog
        after the first pages: a closed conversation gets no more events); at the
        first one that needs loading, the rest of the page goes :meth:`_project_loading`'s
        way (its rows loaded at once), on top of the rows applied so far.
        """
        cached = self._open
        started = fresh if fresh is not None else set()
        # every conversation's row as the page goes (None: not started yet)
        rows: dict[str, ConversationRow | None] = {}
        it = iter(items)
        for item in it:
            if isinstance(item, RowEvent):  # what encode_event writes (nearly every one)
                cid = item.conversation_id
                if cid is None:
                    continue
                if cid in rows:
                    rows[cid] = apply_fields(rows[cid], item, item["occurred_at"])
                    continue
            elif type(item) is dict:
                cid = item.get("conversation_id")
            else:
                cid = conversation_of(item)  # type: ignore[arg-type]
            if cid is None:
                continue
            if cid not in rows:
                row = cached.get(cid)
                if row is None and cid and not _opening(item):
                    self._project_loading(chain((item,), it), load_rows, rows, started)
                    break
                if row is None:
                    started.add(cid)
                rows[cid] = row
            rows[cid] = _applied(rows[cid], item)
        return [row for row in rows.values() if row is not None]

    def _project_loading(self, items: Iterable[Item],
                         load_rows: Callable[[set[str]], dict[str, ConversationRow]],
                         rows: dict[str, ConversationRow | None], fresh: set[str]) -> None:
        """:meth:`_project`'s rest of a page once a row must be loaded: every
        conversation's first item here found first, the rows neither in ``rows``, cached
        nor opened here loaded at once, then every item applied to ``rows``."""
        cached = self._open
        first: dict[str, Item] = {}  # each conversation's first item here
        keyed: list[tuple[str, Item]] = []  # the items about a conversation, with its id
        add, first_of = keyed.append, first.setdefault
        for item in items:
            if isinstance(item, RowEvent):
                cid = item.conversation_id
            elif type(item) is dict:
                cid = item.get("conversation_id")
            else:
                cid = conversation_of(item)  # type: ignore[arg-type]
            if cid is not None:
                add((cid, item))
                if cid not in rows:
                    first_of(cid, item)
        missing = {cid for cid, item in first.items()
                   if cid and cid not in cached and not _opening(item)}
        loaded = load_rows(missing) if missing else {}
        for cid in first:
            row = rows[cid] = cached.get(cid) or loaded.get(cid)
            if row is None:
                fresh.add(cid)
        for cid, item in keyed:
            rows[cid] = _applied(rows[cid], item)

    def _remember(self, changed: Sequence[ConversationRow]) -> None:
        """Cache the open rows just written, drop the closed ones."""
        cached = self._open
        closed = []
        for row in changed:
            if row.closed_us is None:
                cached[row.conversation_id] = row
            else:
                cached.pop(row.conversation_id, None)
                closed.append(row)
        if closed and self.on_closed is not None:
            self.on_closed(closed)
        if len(cached) > self.cache_size:
            self.forget()

    def catch_up(self, events: EventStore, *, name: str = EVENT_STORE_POSITION,
                 page: int = 5_000, progress: Callable[[int], None] | None = None) -> int:
        """Project every stored event after this projection's tracked position."""
        after = self.store.position(name) or 0
        self._check_cache(name, after)
        if isinstance(events, RawEventReader):
            return self._catch_up_stored(events.read_raw, after, name, page, progress)
        done = 0
        while True:
            batch = events.read(after, page)
            if not batch:
                return done
            before, after = after, batch[-1][0]
            self.apply([e for _, e in batch], Position(name, after, before))
            done += len(batch)
            if progress is not None:
                progress(len(batch))

    def _catch_up_stored(self, read_raw: Callable[[int, int], list[tuple[int, bytes]]],
                         after: int, name: str, page: int,
                         progress: Callable[[int], None] | None) -> int:
        """``catch_up`` on raw rows, in three overlapping steps per page.

        While page N is projected (Python), page N+1 is being read and page N-1's
        rows are being written (PostgreSQL), each in its own thread. Writes stay
        one transaction per page (rows + position), in page order. Rows are only
        loaded from the store once the previous write committed.
        """
        done = 0
        writer = OrderedWriter(self.store, self._snapshots)
        with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as reader:
            ahead: Future[list[tuple[int, bytes]]] = reader.submit(read_raw, after, page)
            try:
                while True:
                    batch = ahead.result()
                    if not batch:
                        writer.flush()
                        self._cached_at[name] = after
                        return done
                    after = batch[-1][0]
                    ahead = reader.submit(read_raw, after, page)
                    items = map(stored_item, map(_STATE, batch))
                    fresh: set[str] = set()
                    changed = self._project(items, writer.load_rows, fresh)
                    writer.save(changed, Position(name, after), fresh)
                    self._remember(changed)
                    done += len(batch)
                    if progress is not None:
                        progress(len(batch))
            except BaseException:
                self.forget()  # the cache may hold rows that were not written
                writer.abandon()
                raise

    def replay(self, events: EventStore, *, name: str = EVENT_STORE_POSITION,
               progress: Callable[[int], None] | None = None,
               workers: int | None = None) -> int:
        """Rebuild the read model from scratch out of the event store.

        On PostgreSQL with a large store the rows are rebuilt by ``workers``
        processes (default: one per CPU, :mod:`.replay`); the position is
        recorded once all of them are written, then whatever was stored
        meanwhile is caught up as usual.
        """
        self.store.reset()
        self.forget()
        from services.projections.application import replay as partitioned

        parts = partitioned.workers(workers)
        store = self.store
        if parts > 1 and isinstance(events, PartitionedEventReader) \
                and isinstance(store, RowCopier):
            upto = events.max_notification_id()
            if upto >= partitioned.MIN_EVENTS:
                keeper = store if isinstance(store, CellKeeper) else None
                try:
                    done, cells = partitioned.replay_partitioned(
                        events, store, upto, parts, progress, cells=keeper)
                except partitioned.PartitionedReplayFailed as exc:
                    log.warning("partitioned replay failed (%s); replaying in one process",
                                exc)
                    self.store.reset()
                else:
                    if keeper is not None:  # the workers copied rows and summed their cells
                        _write_cells(keeper, cells, parts)
                    self.store.save([], Position(name, upto))
                    return done + self.catch_up(events, name=name, page=20_000,
                                                progress=progress)
        return self.catch_up(events, name=name, page=20_000, progress=progress)


def _applied(row: ConversationRow | None, item: Item) -> ConversationRow | None:
    """``item`` applied to ``row`` by the rules (:mod:`.rows`), whatever form it came in."""
    if isinstance(item, RowEvent):
        return apply_fields(row, item, item["occurred_at"])
    if type(item) is dict:
        return project_payload(row, item)
    return project(row, item)  # type: ignore[arg-type]


def _opening(item: Item) -> bool:
    """Whether ``item`` opens its conversation (no stored row needed before it)."""
    if isinstance(item, (RowEvent, dict)):
        return bool(item["event_type"] == "ConversationOpened")
    return isinstance(item, ConversationOpened)


def _write_cells(keeper: CellKeeper, cells: bool | None, parts: int) -> None:
    """Mark the cells the workers copied ready, or (if some could not be written)
    rebuild them all from the rows."""
    if cells:
        keeper.cells_ready()
        return
    log.warning("writing the replay's metric cells failed; rebuilding them")
    keeper.rebuild_cells(parts)
