"""Storage on a core of its own: the forked writer process of a bulk import.

The importing process decides batches; this process owns every write they
need. It takes the decided batches in order and holds them back until
:data:`GROUP_ROWS` events have come, or the importer is about to wait for an
acknowledgement (it sends :data:`FLUSH`); then it commits them in one
transaction, projects the committed events into the read model from their
stored JSON, and acknowledges them. Big transactions matter on SQLite:
inserting into the random-keyed aggregate index dirties about one page per
event, and every commit writes its dirty pages again, so 20,000 events per
commit cost a fraction of 2,000.

If a commit fails because another writer took an aggregate version first,
the writer reports the batch and drops everything after it until the
importer says ``reset``; the importer then redoes those batches itself from
storage (see :meth:`services.in_process.pipeline.EmbeddedPipeline.run_pipelined`).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Protocol

from services.bulk_import.parent_watch import end_with_parent
from services.conversation.application.ports import (
    ConcurrencyConflict,
    EncodedBatch,
    EncodedCommits,
)


class StoredProjection(Protocol):
    """What the writer process needs of the pipeline it builds in the child
    (:class:`~services.in_process.pipeline.EmbeddedPipeline`, which imports this module)."""

    encoded: EncodedCommits | None

    def catch_up(self) -> None: ...

    def project_stored(self, first: int, last: int, states: Sequence[bytes]) -> None: ...

GROUP_ROWS = 25_000
RESET = "reset"
#: "commit what you have": the importer is about to wait for acknowledgements
FLUSH = "flush"


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """One decided batch, encoded by the store (``EncodedCommits.encode``), and its number."""

    seq: int
    batch: EncodedBatch


class WriterFailed(Exception):
    """The writer process died or hit an error it cannot recover from."""


def _serve(open_stores: Callable[[], Any], build: Callable[[Any], StoredProjection],
           inbox: Any, outbox: Connection, parent: int) -> None:
    end_with_parent(parent)
    stores = open_stores()
    try:
        pipeline = build(stores)
        events = pipeline.encoded  # the capability, checked once by the pipeline
        if events is None:
            raise TypeError("the writer process needs a store with EncodedCommits (SQLite)")
        pipeline.catch_up()
        _loop(events, pipeline, inbox, outbox)
    except BaseException:
        outbox.send(("error", -1, traceback.format_exc(limit=8)))
        raise
    finally:
        stores.close()


def _loop(events: EncodedCommits, pipeline: StoredProjection, inbox: Any,
          outbox: Connection) -> None:
    held: object = None  # a message taken while grouping, handled next round
    discarding = False
    while True:
        message = held if held is not None else inbox.get()
        held = None
        if message is None:
            return
        if message == RESET:
            discarding = False
            outbox.send((RESET, -1, ""))
            continue
        if discarding or message == FLUSH:
            continue
        assert isinstance(message, WriteBatch)
        group: list[WriteBatch] = [message]
        size = len(message.batch.rows)
        while size < GROUP_ROWS:  # wait for more: big transactions are much cheaper
            following = inbox.get()
            if following == FLUSH:
                break
            if not isinstance(following, WriteBatch):
                held = following
                break
            group.append(following)
            size += len(following.batch.rows)
        batches = [message.batch for message in group]
        try:
            ids = events.commit_encoded(batches)
        except ConcurrencyConflict as exc:
            discarding = True
            outbox.send(("conflict", group[0].seq, str(exc)))
            continue
        if ids:
            pipeline.project_stored(ids[0], ids[-1],
                                    [row[3] for batch in batches for row in batch.rows])
        outbox.send(("stored", group[-1].seq, ""))


class WriterProcess:
    """Context manager: fork the writer on entry; :meth:`finish` drains and joins it.

    ``open_stores`` runs in the child, so no connection crosses the fork:
    enter it before the parent opens its own connections. ``build`` makes the
    child's pipeline of those stores (the caller's choice: this module does not
    import the pipeline, which imports it).
    """

    def __init__(self, open_stores: Callable[[], Any],
                 build: Callable[[Any], StoredProjection]) -> None:
        context = multiprocessing.get_context("fork")
        self._inbox = context.Queue(maxsize=64)
        self._replies, child_end = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve,
                                        args=(open_stores, build, self._inbox, child_end,
                                              os.getpid()),
                                        name="bonychat-writer", daemon=True)
        self._child_end = child_end
        self._unflushed = False

    def __enter__(self) -> WriterProcess:
        self._process.start()
        self._child_end.close()
        return self

    def send(self, message: WriteBatch | str | None) -> None:
        self._inbox.put(message)
        self._unflushed = isinstance(message, WriteBatch)

    def reply(self, block: bool) -> tuple[str, int, str] | None:
        """The next ``(kind, seq, detail)`` from the writer, or None if none is ready.

        The writer holds batches back to commit them together; before blocking,
        tell it to commit what it has.
        """
        if not block and not self._replies.poll():
            return None
        if self._unflushed:
            self.send(FLUSH)
        try:
            kind, seq, detail = self._replies.recv()
        except EOFError:
            raise WriterFailed(f"writer process exited ({self._process.exitcode})") from None
        if kind == "error":
            raise WriterFailed(f"writer process failed: {detail.strip().splitlines()[-1]}")
        return str(kind), int(seq), str(detail)

    def reset(self) -> None:
        """After a conflict: let the writer take batches again, once it has dropped the rest."""
        self.send(RESET)
        while True:
            reply = self.reply(block=True)
            if reply is not None and reply[0] == RESET:
                return

    def finish(self) -> None:
        """Tell the writer to stop after what it has, and wait for it."""
        self._inbox.put(None)
        self._inbox.close()
        self._inbox.join_thread()
        self._process.join()
        if self._process.exitcode != 0:
            raise WriterFailed(f"writer process failed (exit {self._process.exitcode})")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None and self._process.is_alive():
            self.finish()
            return
        if exc is not None:
            # the writer may be gone with batches still queued for it: do not let
            # this process wait at exit for a pipe nobody reads
            self._inbox.cancel_join_thread()
            self._inbox.close()
            self._process.kill()
            self._process.join()
