"""The conversation service's unit of work, fitted to batches.

One object owns the whole transaction protocol of a batch, so that every way
into the conversation service drives it the same way:

1. :meth:`BatchUnitOfWork.decide` de-duplicates the batch and applies it to the
   cached contact aggregates (:class:`~.processor.BatchProcessor`). The decision
   is *in flight*: its dedupe keys count as seen and its aggregates stay cached
   (pinned) until it is settled, so further batches may be decided on top of it.
2. :meth:`~BatchUnitOfWork.commit` writes it in one transaction (events, outcomes,
   dead letters, the consumed position, the version check of what it only read)
   and settles it.
3. On a :class:`~.ports.ConcurrencyConflict` (another writer took a version,
   moved an aggregate the batch read, or recorded the position first), every
   cached aggregate and every decision in flight is forgotten and the batch is
   decided again from storage: up to ``max_attempts`` times. This is the one
   retry rule. Any other failure forgets the cache too and is raised.

Drivers (``services/in_process/pipeline.py``: import, HTTP sink and sweep;
``services/bulk_import/writer.py``: the bulk import's writer process;
``services/conversation/entrypoints/kafka.py`` with ``committing.py``: the Kafka
service) only choose *where* the write happens:

- here and now: :meth:`process` / :meth:`commit`;
- on another thread: :meth:`write` there (it touches no cache), then
  :meth:`settle` or, if it failed, :meth:`forget` on the deciding thread;
- in another process: :meth:`encode` the decision for an
  :class:`~.ports.EncodedCommits` store, :meth:`settle` each one stored there;
  after a conflict there, :meth:`forget` and :meth:`redo` the lost decisions.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.commands import CommandBase
from services.conversation.application.ports import (
    ConcurrencyConflict,
    EncodedBatch,
    EncodedCommits,
    EventStore,
    Position,
    StoredKeys,
)
from services.conversation.application.processor import BatchProcessor, BatchResult, Decision
from services.ingest.domain.normalise import Invalid

Items = Sequence[CommandBase | Invalid]


class BatchUnitOfWork:
    """Decide -> commit -> on conflict decide again from storage -> settle or forget."""

    def __init__(self, store: EventStore, *, cache_size: int = 200_000,
                 max_attempts: int = 5) -> None:
        self.store = store
        self.processor = BatchProcessor(store, cache_size=cache_size)
        self.max_attempts = max_attempts

    def assume_stored(self, stored: StoredKeys, *, limit: int = 2_000_000) -> None:
        """Ask the store only about what ``stored`` may hold (a bulk import; see StoredKeys)."""
        self.processor.assume_stored(stored, limit=limit)

    def process(self, items: Items, source: str = "import",
                position: Position | None = None) -> BatchResult:
        """Decide and commit one batch here (with the retry rule)."""
        return self.commit(self.decide(items, source), position)

    def decide(self, items: Items, source: str) -> Decision:
        """Dedupe and apply to the cached aggregates; the decision is in flight until
        it is committed, settled or forgotten."""
        return self.processor.decide(items, source, in_flight=True)

    def commit(self, decision: Decision, position: Position | None = None) -> BatchResult:
        """Write ``decision`` and settle it; on a conflict, decide it again from storage."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                result = self.write(decision, position)
            except ConcurrencyConflict:
                self.forget()
                if attempt == self.max_attempts:
                    raise
                decision = self.decide(decision.items, decision.source)
                continue
            except BaseException:
                self.forget()  # the cache holds what was not stored
                raise
            self.settle(decision)
            return result
        raise AssertionError("unreachable")

    def write(self, decision: Decision, position: Position | None = None) -> BatchResult:
        """Only the store's transaction: safe on another thread (no cache is touched).

        The deciding thread then calls :meth:`settle`, or :meth:`forget` if it failed.
        """
        result = decision.result
        ids = self.store.commit(decision.events, result.outcomes, result.dead_letters,
                                position, decision.read, originators=decision.originators)
        result.events = list(zip(ids, decision.events, strict=True))
        return result

    def encode(self, store: EncodedCommits, decision: Decision) -> EncodedBatch:
        """``decision`` encoded by ``store`` for a commit in another process
        (:meth:`EncodedCommits.commit_encoded`); :meth:`settle` it once stored there."""
        result = decision.result
        return store.encode(decision.events, result.outcomes, result.dead_letters,
                            decision.read)

    def settle(self, decision: Decision) -> BatchResult:
        """``decision`` is stored (here or elsewhere): its keys and aggregates are ordinary."""
        self.processor.release(decision)
        return decision.result

    def forget(self) -> None:
        """Drop every cached aggregate and decision in flight (they may be stale or unstored)."""
        self.processor.forget()

    def redo(self, decision: Decision) -> BatchResult:
        """A decision lost with a failed write elsewhere (after :meth:`forget`): decide it
        again from storage and commit it here."""
        return self.process(decision.items, decision.source)
