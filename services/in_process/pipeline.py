"""The embedded pipeline: ingest -> conversation -> projections, in one process.

Each batch of input lines is validated, de-duplicated and applied to the
aggregates, committed to the event store in one transaction, then projected
into the read model (which records its own position, so a crash between the two
commits is repaired by the catch-up at the next start).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError

from schemas.commands import CommandBase
from services.bulk_import.parse import ParallelParser
from services.bulk_import.writer import WriteBatch, WriterProcess
from services.conversation.application.ports import EncodedCommits, EventStore, Position
from services.conversation.application.processor import BatchResult, Decision
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import Invalid, parse
from services.projections.application.ports import ReadModelStore
from services.projections.application.projector import EVENT_STORE_POSITION, ConversationProjection

#: input lines decided ahead of the writer's acknowledgements: about two of
#: its transactions (enough to keep both processes busy, little for the
#: writer to finish alone at the end)
IN_FLIGHT_LINES = 50_000

_CATCH_UP_ATTEMPTS = 5


@dataclass(slots=True)
class ImportSummary:
    """The import result of CONTRACT §4."""

    read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    invalid: int = 0

    def add(self, result: BatchResult) -> None:
        self.accepted += result.accepted
        self.duplicate += result.duplicate
        self.invalid += result.invalid
        self.rejected.update(result.rejected)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "accepted": self.accepted, "duplicate": self.duplicate,
                "rejected": dict(sorted(self.rejected.items())), "invalid": self.invalid}


def batched(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Non-blank lines in lists of ``size`` (blank lines are skipped, not counted)."""
    batch: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        batch.append(line.rstrip(b"\r\n"))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_InFlight = tuple[int, int, Decision]


class EmbeddedPipeline:
    """Runs the whole product in-process on one event store and read model.

    A thin driver of the :class:`BatchUnitOfWork` (decide, commit, retry, cache)
    that projects what it stores; :meth:`run_pipelined` needs a store that
    :class:`~services.conversation.application.ports.EncodedCommits` (SQLite).
    """

    def __init__(self, events: EventStore, read_models: ReadModelStore, *,
                 batch_size: int = 2_000) -> None:
        self.events = events
        self.uow = BatchUnitOfWork(events)
        #: the capability of a pipelined bulk import, checked once here
        self.encoded: EncodedCommits | None = events if isinstance(events, EncodedCommits) \
            else None
        self.projection = ConversationProjection(read_models)
        self.batch_size = batch_size
        self._projected: int | None = None

    def catch_up(self) -> None:
        """Project whatever is stored but not yet in the read model.

        Another process on the same store may have projected rows since we cached
        them, or may record a later position while we catch up: so drop the cache,
        and on a position conflict start again from the position it recorded.
        """
        for attempt in range(1, _CATCH_UP_ATTEMPTS + 1):
            self.projection.forget()
            try:
                self.projection.catch_up(self.events)
                break
            except IntegrityError:
                if attempt == _CATCH_UP_ATTEMPTS:
                    raise
        self._projected = self.projection.store.position(EVENT_STORE_POSITION) or 0

    def process_batch(self, raw: Sequence[str | bytes], source: str = "import") -> BatchResult:
        """Validate, decide, store and project one batch of raw envelopes."""
        return self.process_items([parse(line) for line in raw], source)

    def process_items(self, items: Sequence[CommandBase | Invalid],
                      source: str = "import") -> BatchResult:
        """Decide, store and project already parsed items."""
        return self._project(self.uow.process(items, source))

    def _store(self, decision: Decision) -> BatchResult:
        return self._project(self.uow.commit(decision))

    def _project(self, result: BatchResult) -> BatchResult:
        if result.events:
            events = [e for _, e in result.events]
            self._project_range(result.events[0][0], result.events[-1][0],
                                lambda position: self.projection.apply(events, position))
        return result

    def project_stored(self, first: int, last: int, states: Sequence[bytes]) -> None:
        """Project events just stored with notification ids ``first..last``."""
        self._project_range(first, last,
                            lambda position: self.projection.apply_stored(states, position))

    def _project_range(self, first: int, last: int, apply: Callable[[Position], int]) -> None:
        if self._projected is not None and first == self._projected + 1:
            try:
                apply(Position(EVENT_STORE_POSITION, last, self._projected))
                self._projected = last
                return
            except IntegrityError:  # another process projected these events first
                pass
        self.catch_up()  # another writer interleaved: read back from the store in order

    def run(self, lines: Iterable[bytes],
            progress: Callable[[int], None] | None = None,
            parser: ParallelParser | None = None) -> ImportSummary:
        """Import JSONL lines; ``progress`` is told how many lines each batch had.

        Storing and projecting batch N runs on a writer thread while batch N+1
        is parsed (SQLite releases the GIL while it works); deciding N+1 waits
        for N to be stored, so the aggregates never run ahead of storage. With
        a :class:`ParallelParser`, parsing happens in a worker process instead.
        """
        summary = ImportSummary()
        self.catch_up()
        parsed = self._parsed(lines, parser)
        with ThreadPoolExecutor(1, thread_name_prefix="bonychat-writer") as writer:
            pending: Future[BatchResult] | None = None
            pending_size = 0
            for raw, items in parsed:
                if pending is not None:
                    summary.add(pending.result())
                    if progress is not None:
                        progress(pending_size)
                decision = self.uow.decide(items, "import")
                pending = writer.submit(self._store, decision)
                pending_size = len(raw)
                summary.read += len(raw)
            if pending is not None:
                summary.add(pending.result())
                if progress is not None:
                    progress(pending_size)
        return summary

    def run_pipelined(self, lines: Iterable[bytes], writer: WriterProcess,
                      progress: Callable[[int], None] | None = None,
                      parser: ParallelParser | None = None,
                      window: int = IN_FLIGHT_LINES) -> ImportSummary:
        """:meth:`run` with storing and projecting done by a :class:`WriterProcess`.

        This process only decides. A decided batch goes to the writer encoded
        and stays in flight (its keys count as seen, its aggregates stay cached)
        until the writer has stored it; up to ``window`` lines are.
        If the writer reports a conflict with another process, every batch in
        flight is lost: they are decided again here, from storage, and stored
        by this process before the pipeline goes on.

        It asks the store only about keys and contacts the store may hold
        (:class:`~services.conversation.application.ports.StoredKeys`); after a conflict,
        about everything.
        """
        store = self.encoded
        if store is None:
            raise TypeError("a pipelined import needs a store with EncodedCommits (SQLite)")
        summary = ImportSummary()
        stored = store.stored_keys()
        if stored is not None:
            self.uow.assume_stored(stored)
        in_flight: deque[_InFlight] = deque()
        for seq, (raw, items) in enumerate(self._parsed(lines, parser), start=1):
            self._settle(writer, in_flight, summary, progress,
                         wait=sum(entry[1] for entry in in_flight) >= window)
            decision = self.uow.decide(items, "import")
            writer.send(WriteBatch(seq, self.uow.encode(store, decision)))
            in_flight.append((seq, len(raw), decision))
            summary.read += len(raw)
        while in_flight:
            self._settle(writer, in_flight, summary, progress, wait=True)
        return summary

    def _settle(self, writer: WriterProcess, in_flight: deque[_InFlight],
                summary: ImportSummary, progress: Callable[[int], None] | None,
                wait: bool) -> None:
        """Take the writer's replies: count what it stored, redo what it lost."""
        while in_flight:
            reply = writer.reply(block=wait)
            if reply is None:
                return
            wait = False
            kind, seq, _ = reply
            if kind == "stored":
                while in_flight and in_flight[0][0] <= seq:
                    _, size, decision = in_flight.popleft()
                    summary.add(self.uow.settle(decision))
                    if progress is not None:
                        progress(size)
                continue
            writer.reset()  # "conflict": the writer dropped every batch in flight
            self.uow.forget()
            lost = list(in_flight)
            in_flight.clear()
            for _, size, decision in lost:
                summary.add(self._project(self.uow.redo(decision)))
                if progress is not None:
                    progress(size)

    def _parsed(self, lines: Iterable[bytes], parser: ParallelParser | None
                ) -> Iterable[tuple[list[bytes], list[CommandBase | Invalid]]]:
        batches = batched(lines, self.batch_size)
        if parser is not None:
            return parser.map(batches)
        return ((raw, [parse(line) for line in raw]) for raw in batches)

    def run_inline(self, lines: Iterable[bytes],
                   progress: Callable[[int], None] | None = None) -> ImportSummary:
        """:meth:`run` without threads or processes: every step in sequence."""
        summary = ImportSummary()
        self.catch_up()
        for raw in batched(lines, self.batch_size):
            summary.read += len(raw)
            summary.add(self.process_batch(raw))
            if progress is not None:
                progress(len(raw))
        return summary
