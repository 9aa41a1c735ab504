"""``bonychat replay`` on several cores: one process per partition of the aggregates.

A conversation's rows depend only on its own events, and every event about a
conversation is recorded by the contact aggregate that owns it. So the event
store splits into independent partitions by aggregate id
(``PostgresEventStore.stream_partition``), each projected by a forked worker
from the stored JSON (``rows.trusted_payload`` / ``project_payload``, the
same code as the projections service) in notification order. A conversation
never changes after it is closed, so a worker writes a closed row once, with
``COPY``, and keeps only the open ones in memory; it writes those at the end.

The replay is still exactly-once: the projection's position is recorded (by
the caller) only after every worker has written all its rows; until then the
position is absent (``reset`` deleted it) and a projections service starting
meanwhile would rebuild every row from the first event, overwriting what a
failed replay left. If anything goes wrong -- a worker fails, an event refers
to a conversation its worker does not know (for instance one already closed),
no ``fork`` -- :class:`PartitionedReplayFailed` tells the caller to reset and
replay in one process instead.

When asked (``cells``), each worker also sums the metric cells of the rows it writes
(:class:`~services.projections.domain.cell_arrays.CellArrays`); when it is done, the
workers split their cells by key, exchange the parts and each adds up and copies
the cells it owns (:mod:`.replay_cells`), so the cells need no rebuild by PostgreSQL
from every row and no merge on one core.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from multiprocessing.connection import Connection, wait
from typing import Any

from schemas.stored_rows import row_event
from services.conversation.application.ports import PartitionedEventReader as PartitionedEvents
from services.projections.application.ports import CellKeeper, DeferredIndexes, RowCopier
from services.projections.application.replay_cells import (
    CellsLink,
    keep_own_ends,
    links,
    write_own,
)
from services.projections.domain.cell_arrays import CellArrays
from services.projections.domain.rows import (
    ConversationRow,
    conversation_of,
    project,
    project_payload,
    trusted_payload,
)

log = logging.getLogger(__name__)
#: closed rows written together (each write opens a connection)
FLUSH_ROWS = 50_000
#: below this many events a single process is as fast (forking costs ~0.1 s)
MIN_EVENTS = 50_000
#: what a worker leaves to its exit (freeing its cells and rows one by one took ~0.3 s)
_LEFT: list[object] = []


class PartitionedReplayFailed(Exception):
    """The partitioned replay could not finish; replay in one process instead."""


def workers(configured: int | None = None) -> int:
    """``configured`` (``Settings.replay_workers``), else one per CPU (at most 8)."""
    if configured is not None:
        return max(1, configured)
    return max(1, min(8, os.cpu_count() or 1))


def _project_partition(events: PartitionedEvents, store: RowCopier,
                       job: tuple[int, int, int], counter: Any,
                       cells: tuple[CellsLink, list[Connection]] | None = None) -> None:
    """Worker: project partition ``part`` of ``parts`` up to ``upto`` (``job``).

    Closed rows are written as they close, open ones at the end; then the cells
    of every row written are exchanged and written through ``cells`` (when given:
    this worker's link and every pipe end it must close). Reading and
    writing overlap the projecting: the next chunk is fetched, and the closed rows
    copied, each on a thread of its own (psycopg waits for PostgreSQL without the
    GIL), one at a time and in order.
    """
    upto, part, parts = job
    if cells is not None:
        keep_own_ends(*cells)
    sums = CellArrays() if cells is not None else None
    open_rows: dict[str, ConversationRow] = {}
    closed: list[ConversationRow] = []
    with ThreadPoolExecutor(1, thread_name_prefix="read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="copy") as writer:
        writing: Future[None] | None = None
        for chunk in _prefetched(events.stream_partition(upto, part, parts), reader):
            for state in chunk:
                fast = row_event(state)
                if fast is not None:  # what encode_event writes: no dict, no model
                    cid = fast.conversation_id
                    row = None if cid is None else project_payload(open_rows.get(cid), fast)
                else:
                    cid, row = _project_other(open_rows, state)
                if row is None:
                    continue
                if row.closed_us is None:
                    open_rows[cid] = row
                else:
                    open_rows.pop(cid, None)
                    closed.append(row)
            if len(closed) >= FLUSH_ROWS:  # closed rows never change again: copied aside
                if writing is not None:
                    writing.result()
                writing = writer.submit(store.copy_rows, closed)
                if sums is not None:
                    sums.add(closed)
                closed = []
            with counter.get_lock():
                counter.value += len(chunk)
        if writing is not None:
            writing.result()
        closed += open_rows.values()
        writing = writer.submit(store.copy_rows, closed)
        if sums is not None:
            sums.add(closed)
        writing.result()  # every row is written before the cells say so
    if sums is not None and cells is not None:
        write_own(sums, cells[0])
    if multiprocessing.parent_process() is not None:  # a forked worker, about to exit:
        _LEFT.append((sums, closed))  # its exit frees them at once, not object by object


def _prefetched(chunks: Iterator[list[bytes]], thread: ThreadPoolExecutor
                ) -> Iterator[list[bytes]]:
    """``chunks``, each next one read on ``thread`` while the caller works on this one."""
    pending: Future[list[bytes] | None] = thread.submit(next, chunks, None)
    try:
        while (chunk := pending.result()) is not None:
            pending = thread.submit(next, chunks, None)
            yield chunk
    finally:
        if not pending.done():  # the caller stopped early: let the read end first
            wait_futures([pending])
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _project_other(open_rows: dict[str, ConversationRow], state: bytes
                   ) -> tuple[str, ConversationRow | None]:
    """A stored event :func:`row_event` is unsure of: trusted as a dict, or decoded (and
    upcast) as an event; the conversation and its new row (None: nothing to project)."""
    item = trusted_payload(state)
    if type(item) is dict:
        cid = item.get("conversation_id")
        row = None if cid is None else project_payload(open_rows.get(cid), item)
    else:
        cid = conversation_of(item)  # type: ignore[arg-type]
        row = None if cid is None else project(open_rows.get(cid), item)  # type: ignore[arg-type]
    return cid or "", row


def replay_partitioned(events: PartitionedEvents, store: RowCopier, upto: int, parts: int,
                       progress: Callable[[int], None] | None = None, *,
                       cells: CellKeeper | None = None) -> tuple[int, bool | None]:
    """Write the rows of every event up to ``upto`` with ``parts`` worker processes.

    The read model must be empty (just reset). A store that can
    (:class:`~.ports.DeferredIndexes`) has its secondary indexes dropped while the
    workers copy the rows and built again afterwards, whether they succeed or not.
    Returns the events projected and,
    when ``cells`` is given, whether every worker copied the metric cells it owns
    (:mod:`.replay_cells`; they are not marked ready: the caller does, or rebuilds
    them from the rows when False).
    """
    try:
        context = multiprocessing.get_context("fork")
    except ValueError as exc:
        raise PartitionedReplayFailed("no fork on this platform") from exc
    indexes = store if isinstance(store, DeferredIndexes) else None
    if indexes is None:
        return _run_workers(events, store, upto, parts, context=context, progress=progress,
                            cells=cells)
    indexes.drop_indexes()
    try:
        return _run_workers(events, store, upto, parts, context=context, progress=progress,
                            cells=cells)
    finally:
        indexes.create_indexes(parts)


def _run_workers(events: PartitionedEvents, store: RowCopier, upto: int, parts: int, *,
                 context: Any, progress: Callable[[int], None] | None,
                 cells: CellKeeper | None) -> tuple[int, bool | None]:
    """:func:`replay_partitioned`'s worker processes, started and waited for."""
    counter = context.Value("q", 0)
    made, readers, ends = links(context, parts, cells) if cells is not None else ([], [], [])
    processes = [context.Process(target=_project_partition, name=f"bonychat-replay-{part}",
                                 args=(events, store, (upto, part, parts), counter,
                                       (made[part], ends) if made else None), daemon=True)
                 for part in range(parts)]
    for process in processes:
        process.start()
    for end in ends:
        end.close()  # the workers' ends: the parent sees EOF if a worker dies
    total: list[int | None] | None = [] if cells is not None else None
    received = 0
    reported = 0
    finished = False
    try:
        while readers or any(p.is_alive() for p in processes):
            if readers:
                received += _receive(readers, total)
            else:  # wakes as soon as a worker exits (polling every 0.1 s cost up to that)
                wait([p.sentinel for p in processes if p.exitcode is None], timeout=0.1)
            if progress is not None and counter.value > reported:
                progress(counter.value - reported)
                reported = counter.value
            if any(p.exitcode not in (None, 0) for p in processes):
                break
        else:
            finished = True
    finally:
        for reader in readers:
            reader.close()
        for process in processes:
            if process.is_alive() and not finished:  # a worker failed, or this loop did
                process.terminate()
            process.join()
    failed = [p.name for p in processes if p.exitcode != 0]
    if failed:
        raise PartitionedReplayFailed(f"replay workers failed: {', '.join(failed)}")
    if cells is not None and received != parts:
        raise PartitionedReplayFailed(f"cells of {parts - received} workers missing")
    if progress is not None and counter.value > reported:
        progress(counter.value - reported)
    return int(counter.value), None if total is None else None not in total


def _receive(readers: list[Connection], total: list[int | None] | None) -> int:
    """Wait up to 0.1 s for workers' word on their cells (how many they copied, None:
    the copy failed); add what came to ``total``."""
    received = 0
    for reader in wait(readers, timeout=0.1):
        assert isinstance(reader, Connection)
        readers.remove(reader)
        try:
            part_cells = reader.recv()
        except EOFError:  # the worker died before sending: its exit code says why
            continue
        finally:
            reader.close()
        if part_cells is not None and type(part_cells) is not int:
            raise PartitionedReplayFailed(f"a worker sent {type(part_cells).__name__}")
        received += 1
        if total is not None:
            total.append(part_cells)
    return received
