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
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

from services.conversation.application.ports import PartitionedEventReader as PartitionedEvents
from services.projections.application.ports import RowCopier
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


class PartitionedReplayFailed(Exception):
    """The partitioned replay could not finish; replay in one process instead."""


def workers(configured: int | None = None) -> int:
    """``configured`` (``Settings.replay_workers``), else one per CPU (at most 8)."""
    if configured is not None:
        return max(1, configured)
    return max(1, min(8, os.cpu_count() or 1))


def _project_partition(events: PartitionedEvents, store: RowCopier,
                       job: tuple[int, int, int], counter: Any) -> None:
    """Worker: project partition ``part`` of ``parts`` up to ``upto`` (``job``).

    Closed rows are written as they close, open ones at the end.
    """
    upto, part, parts = job
    open_rows: dict[str, ConversationRow] = {}
    closed: list[ConversationRow] = []
    for chunk in events.stream_partition(upto, part, parts):
        for state in chunk:
            item = trusted_payload(state)
            if type(item) is dict:
                cid = item.get("conversation_id")
                if cid is None:
                    continue
                row = project_payload(open_rows.get(cid), item)
            else:
                cid = conversation_of(item)  # type: ignore[arg-type]
                if cid is None:
                    continue
                row = project(open_rows.get(cid), item)  # type: ignore[arg-type]
            if row is None:
                continue
            if row.closed_us is None:
                open_rows[cid] = row
            else:
                open_rows.pop(cid, None)
                closed.append(row)
        if len(closed) >= FLUSH_ROWS:
            store.copy_rows(closed)
            closed = []
        with counter.get_lock():
            counter.value += len(chunk)
    store.copy_rows(closed + list(open_rows.values()))


def replay_partitioned(events: PartitionedEvents, store: RowCopier, upto: int, parts: int,
                       progress: Callable[[int], None] | None = None) -> int:
    """Write the rows of every event up to ``upto`` with ``parts`` worker processes.

    The read model must be empty (just reset); returns the events projected.
    """
    try:
        context = multiprocessing.get_context("fork")
    except ValueError as exc:
        raise PartitionedReplayFailed("no fork on this platform") from exc
    counter = context.Value("q", 0)
    processes = [context.Process(target=_project_partition, name=f"bonychat-replay-{part}",
                                 args=(events, store, (upto, part, parts), counter), daemon=True)
                 for part in range(parts)]
    for process in processes:
        process.start()
    reported = 0
    try:
        while any(p.is_alive() for p in processes):
            time.sleep(0.1)
            if progress is not None and counter.value > reported:
                progress(counter.value - reported)
                reported = counter.value
            if any(p.exitcode not in (None, 0) for p in processes):
                break
    finally:
        for process in processes:
            if process.is_alive() and any(p.exitcode not in (None, 0) for p in processes):
                process.terminate()
            process.join()
    failed = [p.name for p in processes if p.exitcode != 0]
    if failed:
        raise PartitionedReplayFailed(f"replay workers failed: {', '.join(failed)}")
    if progress is not None and counter.value > reported:
        progress(counter.value - reported)
    return int(counter.value)
