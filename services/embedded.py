"""The embedded pipeline: ingest -> conversation -> projections, in one process.

Each batch of input lines is validated, de-duplicated and applied to the
aggregates, committed to the event store in one transaction, then projected
into the read model (which records its own position, so a crash between the two
commits is repaired by the catch-up at the next start).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .conversation.ports import EventStore, Position
from .conversation.processor import BatchProcessor, BatchResult
from .ingest.normalise import parse
from .projections.ports import ReadModelStore
from .projections.projector import EVENT_STORE_POSITION, ConversationProjection


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


class EmbeddedPipeline:
    """Runs the whole product in-process on one event store and read model."""

    def __init__(self, events: EventStore, read_models: ReadModelStore, *,
                 batch_size: int = 2_000) -> None:
        self.events = events
        self.processor = BatchProcessor(events)
        self.projection = ConversationProjection(read_models)
        self.batch_size = batch_size
        self._projected: int | None = None

    def catch_up(self) -> None:
        """Project whatever is stored but not yet in the read model."""
        self.projection.catch_up(self.events)
        self._projected = self.projection.store.position(EVENT_STORE_POSITION) or 0

    def process_batch(self, raw: Sequence[str | bytes], source: str = "import") -> BatchResult:
        """Validate, decide, store and project one batch of raw envelopes."""
        result = self.processor.process([parse(line) for line in raw], source=source)
        if result.events:
            first, last = result.events[0][0], result.events[-1][0]
            if self._projected is not None and first == self._projected + 1:
                self.projection.apply([e for _, e in result.events],
                                      Position(EVENT_STORE_POSITION, last))
                self._projected = last
            else:  # another writer interleaved: read back from the store in order
                self.catch_up()
        return result

    def run(self, lines: Iterable[bytes],
            progress: Callable[[int], None] | None = None) -> ImportSummary:
        """Import JSONL lines; ``progress`` is told how many lines each batch had."""
        summary = ImportSummary()
        self.catch_up()
        for raw in batched(lines, self.batch_size):
            summary.read += len(raw)
            summary.add(self.process_batch(raw))
            if progress is not None:
                progress(len(raw))
        return summary
