"""The conversation service's core loop, shared by both runtimes.

A batch of ingest results (commands or invalid inputs) is de-duplicated,
applied to cached contact aggregates in arrival order, and committed to the
event store in one transaction together with the outcomes, dead letters and,
in the Kafka runtime, the consumed position. If the commit fails nothing of the
batch is kept, in storage or in the cache, so the batch can simply be retried.
"""

from __future__ import annotations

import uuid
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.commands import CommandBase, MergeContacts
from schemas.events import DomainEvent

from ..ingest.normalise import Invalid
from .domain.contact import Contact, aggregate_id
from .domain.errors import LifecycleRejection
from .handlers import handle
from .ports import ConcurrencyConflict, DeadLetter, EventStore, Outcome, Position


@dataclass(slots=True)
class BatchResult:
    """Counts of one batch (CONTRACT §4 import summary) and what it stored."""

    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    events: list[tuple[int, DomainEvent]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class Decision:
    """A decided but not yet stored batch."""

    result: BatchResult
    events: list[DomainEvent]
    touched: list[tuple[str, str]]


class _BatchContacts:
    """Unit of work over the aggregate cache: loads on miss, remembers what changed."""

    def __init__(self, processor: BatchProcessor) -> None:
        self._processor = processor
        self.dirty: list[Contact] = []
        self.touched: dict[tuple[str, str], Contact] = {}

    def get(self, workspace_id: str, contact_id: str) -> Contact:
        contact = self._processor.contact(workspace_id, contact_id)
        self.touched[(workspace_id, contact_id)] = contact
        self.dirty.append(contact)
        return contact

    def drain(self) -> list[DomainEvent]:
        events: list[DomainEvent] = []
        for contact in self.dirty:
            if contact.pending:
                events.extend(contact.collect())
        self.dirty.clear()
        return events


class BatchProcessor:
    """Dedupe -> decide -> commit, with an LRU cache of contact aggregates."""

    def __init__(self, store: EventStore, *, cache_size: int = 200_000,
                 max_attempts: int = 5) -> None:
        self.store = store
        self.cache_size = cache_size
        self.max_attempts = max_attempts
        self._cache: OrderedDict[tuple[str, str], Contact] = OrderedDict()

    def contact(self, workspace_id: str, contact_id: str) -> Contact:
        key = (workspace_id, contact_id)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        events = self.store.load(aggregate_id(workspace_id, contact_id))
        contact = Contact.replay(workspace_id, contact_id, events)
        self._cache[key] = contact
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return contact

    def preload(self, items: Sequence[CommandBase | Invalid]) -> None:
        """Load every uncached contact a batch names in one store round trip."""
        wanted: dict[uuid.UUID, tuple[str, str]] = {}
        for item in items:
            if isinstance(item, Invalid):
                continue
            keys = [(item.workspace_id, item.contact_id)]
            if isinstance(item, MergeContacts):
                keys.append((item.workspace_id, item.secondary_contact_id))
            for key in keys:
                if key not in self._cache:
                    wanted[aggregate_id(*key)] = key
        if not wanted:
            return
        found = self.store.load_many(list(wanted))
        for oid, (workspace_id, contact_id) in wanted.items():
            self._cache[(workspace_id, contact_id)] = Contact.replay(
                workspace_id, contact_id, found.get(oid, []))
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self, ids: Sequence[tuple[str, str]] | None = None) -> None:
        """Drop cached aggregates (all of them by default)."""
        if ids is None:
            self._cache.clear()
        else:
            for key in ids:
                self._cache.pop(key, None)

    def process(self, items: Sequence[CommandBase | Invalid], *, source: str = "import",
                position: Position | None = None) -> BatchResult:
        """Process one batch atomically; retry from storage on a version conflict."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self.commit(self.decide(items, source), position)
            except ConcurrencyConflict:
                self.forget()
                if attempt == self.max_attempts:
                    raise
        raise AssertionError("unreachable")

    def decide(self, items: Sequence[CommandBase | Invalid], source: str) -> Decision:
        """First half of :meth:`process`: dedupe and apply to the cached aggregates.

        Until :meth:`commit` succeeds the cache holds unsaved state, so the
        caller must commit (or :meth:`forget`) before deciding the next batch.
        """
        result = BatchResult()
        keys = {item.dedup_key for item in items if not isinstance(item, Invalid)}
        done = self.store.seen(keys) if keys else set()
        self.preload(items)
        contacts = _BatchContacts(self)
        try:
            events = self._decide(items, done, contacts, result, source)
        except BaseException:
            self.forget(list(contacts.touched))
            raise
        return Decision(result, events, list(contacts.touched))

    def commit(self, decision: Decision, position: Position | None = None) -> BatchResult:
        """Second half of :meth:`process`: store everything in one transaction."""
        result = decision.result
        try:
            ids = self.store.commit(decision.events, result.outcomes, result.dead_letters,
                                    position)
        except BaseException:
            self.forget(decision.touched)  # cached state holds unsaved events
            raise
        result.events = list(zip(ids, decision.events, strict=True))
        return result

    @staticmethod
    def _decide(items: Sequence[CommandBase | Invalid], done: set[tuple[str, str]],
                contacts: _BatchContacts, result: BatchResult, source: str) -> list[DomainEvent]:
        """Apply each item in arrival order; fill ``result``; return the new events."""
        events: list[DomainEvent] = []
        for item in items:
            if isinstance(item, Invalid):
                result.invalid += 1
                result.dead_letters.append(DeadLetter(item.raw, item.reason, source,
                                                      item.workspace_id, item.event_id))
                continue
            key = (item.workspace_id, item.event_id)
            if key in done:
                result.duplicate += 1
                continue
            done.add(key)
            reason: str | None = None
            try:
                handle(item, contacts)
                result.accepted += 1
            except LifecycleRejection as rejection:
                reason = rejection.reason
                result.rejected[reason] += 1
            events.extend(contacts.drain())
            result.outcomes.append(Outcome(
                item.workspace_id, item.event_id, item.contact_id, item.event_type,
                item.occurred_at, "rejected" if reason else "accepted", reason))
        return events
