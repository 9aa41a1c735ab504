"""Deciding a batch: dedupe, then apply to cached contact aggregates in arrival order.

A batch of ingest results (commands or invalid inputs) is de-duplicated and
applied to the cached contact aggregates; the :class:`Decision` says what to
store (events, outcomes, dead letters, the aggregates only read). Storing it,
and what to do with the cache when that fails, is the unit of work's job
(:mod:`.application.unit_of_work`), the one place that drives this class.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence

from schemas.commands import CommandBase, ExpireInactive
from schemas.events import DomainEvent
from services.conversation.application.batch_contacts import BatchContacts, scan
from services.conversation.application.decision import BatchResult, Decision
from services.conversation.application.handlers import HANDLERS, handle
from services.conversation.application.ports import (
    DeadLetter,
    EventStore,
    Outcome,
    ReadsBatchAtOnce,
    StoredKeys,
)
from services.conversation.domain.contact import Contact, aggregate_id
from services.conversation.domain.errors import LifecycleRejection
from services.conversation.domain.workspace import Workspace, settings_id
from services.ingest.domain.normalise import Invalid

__all__ = ["BatchProcessor", "BatchResult", "Decision"]

#: ``Outcome(*values)`` without the NamedTuple's Python ``__new__`` (hot path)
_outcome = tuple.__new__


class BatchProcessor:
    """Dedupe -> decide, with an LRU cache of contact aggregates (the unit of work commits)."""

    def __init__(self, store: EventStore, *, cache_size: int = 200_000) -> None:
        self.store = store
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], Contact] = OrderedDict()
        #: decided but not yet stored (see :meth:`decide` with ``in_flight``)
        self._in_flight_keys: set[tuple[str, str]] = set()
        #: the decisions in flight (by ``id``): their aggregates are never evicted. Looked
        #: at only when the cache is over its size (:meth:`_trim`; docs/runtime.md,
        #: "What grows with the backlog": counting them per batch cost ~1 µs an event)
        self._pinned: dict[int, Decision] = {}
        #: the aggregates the batch being decided has touched so far
        self._deciding: dict[tuple[str, str], Contact] = {}
        self._stored: StoredKeys | None = None
        self._stored_limit = 0
        #: workspace -> inactivity timeout, read from the store for every batch
        self._timeouts: dict[str, int | None] = {}

    def assume_stored(self, stored: StoredKeys, *, limit: int = 2_000_000) -> None:
        """Ask the store only about keys and aggregates in ``stored`` (see :class:`StoredKeys`).

        ``stored`` grows with every outcome stored; past ``limit`` outcomes it is
        dropped (memory: ~100 bytes each) and the store is asked about everything.
        """
        self._stored = stored
        self._stored_limit = limit

    def _remember_stored(self, keys: Iterable[tuple[str, str]]) -> None:
        if self._stored is not None:
            self._stored.outcomes.update(map(hash, keys))
            if len(self._stored.outcomes) > self._stored_limit:
                self._stored = None

    def contact(self, workspace_id: str, contact_id: str) -> Contact:
        key = (workspace_id, contact_id)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        events = self.store.load(aggregate_id(workspace_id, contact_id))
        contact = Contact.replay(workspace_id, contact_id, events)
        self._trim()  # first: the caller is about to use this one
        self._cache[key] = contact
        return contact

    def _trim(self) -> None:
        """Evict the least recently used aggregates, never one with unstored events.

        Those are the ones in flight and the ones the batch being decided has
        touched: evicting those would reload them from storage without their
        new events, at a version that is already taken.
        """
        cache, deciding = self._cache, self._deciding
        if len(cache) <= self.cache_size:
            return
        pinned: set[tuple[str, str]] = set()
        for decision in self._pinned.values():
            pinned.update(decision.touched)
        skipped = 0
        while len(cache) > self.cache_size and skipped <= len(pinned) + len(deciding):
            key, contact = cache.popitem(last=False)
            if key in pinned or key in deciding:  # keep it, as most recent
                cache[key] = contact
                skipped += 1
            else:
                self._evicted(contact)

    def _evicted(self, contact: Contact) -> None:
        """An aggregate left the cache: if it has events, they may be stored now."""
        if self._stored is not None and contact.version:
            self._stored.aggregates.add(contact.id)

    def inactivity_timeout(self, workspace_id: str) -> int | None:
        return self._timeouts.get(workspace_id)

    @property
    def timeouts(self) -> dict[str, int | None]:
        """Workspace -> inactivity timeout in force, as read for the batch being decided."""
        return self._timeouts

    def load(self, items: Sequence[CommandBase | Invalid], *,
             unknown: Collection[tuple[str, str]] = ()) -> set[tuple[str, str]]:
        """Read what deciding ``items`` needs from the store, in ONE ``load_many``;
        return which of the ``unknown`` dedupe keys are stored.

        It reads the settings in force now of the batch's workspaces: a settings
        change is an event in the store, so every batch decided after it was
        committed sees it, in every process (CONTRACT §6.1); read with the contacts,
        it costs no round trip of its own (docs/runtime.md, "Per-cycle work"). And
        every uncached contact the batch names (with :meth:`assume_stored`, only
        those the store may hold are asked).
        ``unknown``: asked with the same round trip where the store can
        (:class:`~.ports.ReadsBatchAtOnce`), else with ``seen``.
        """
        _, names, wanted = scan(items, self._cache)
        return self._load(names, wanted, unknown)

    def _load(self, names: set[str], wanted: dict[uuid.UUID, tuple[str, str]],
              unknown: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """:meth:`load` of what :func:`.batch_contacts.scan` found."""
        workspaces = {settings_id(ws): ws for ws in names}
        stored = self._stored
        asked = list(wanted) if stored is None else [o for o in wanted if o in stored.aggregates]
        asked.extend(workspaces)
        seen, found = self._read(unknown, asked)
        if workspaces:
            self._timeouts = {
                ws: Workspace.replay(ws, found.get(oid, [])).inactivity_timeout_seconds
                for oid, ws in workspaces.items()}
        if wanted:
            for oid, (workspace_id, contact_id) in wanted.items():
                self._cache[(workspace_id, contact_id)] = Contact.replay(
                    workspace_id, contact_id, found.get(oid, []))
            self._trim()
        return seen

    def _read(self, keys: Collection[tuple[str, str]], ids: list[uuid.UUID]
              ) -> tuple[set[tuple[str, str]], dict[uuid.UUID, list[DomainEvent]]]:
        store = self.store
        if keys and ids and isinstance(store, ReadsBatchAtOnce):
            return store.seen_and_load(keys, ids)
        return (store.seen(keys) if keys else set(),
                store.load_many(ids) if ids else {})

    def forget(self, ids: Sequence[tuple[str, str]] | None = None) -> None:
        """Drop cached aggregates (all of them, and any :class:`StoredKeys`, by default)."""
        if ids is None:
            self._cache.clear()
            self._in_flight_keys.clear()
            self._pinned.clear()
            self._stored = None
        else:
            for key in ids:
                contact = self._cache.pop(key, None)
                if contact is not None:
                    self._evicted(contact)

    def decide(self, items: Sequence[CommandBase | Invalid], source: str, *,
               in_flight: bool = False) -> Decision:
        """Dedupe and apply to the cached aggregates (nothing is stored here).

        Until the decision is stored the cache holds unsaved state. With
        ``in_flight`` (what the unit of work does) the caller may decide further
        batches on top of it, and must call :meth:`release` once it is stored, or
        :meth:`forget` (everything) if storing failed; until then its keys count
        as seen and its aggregates stay cached. Without, the caller must store
        it or :meth:`forget` before deciding the next batch.
        """
        result = BatchResult()
        keys, names, wanted = scan(items, self._cache)
        done = keys & self._in_flight_keys  # decided, not stored yet: seen all the same
        unknown = keys - done
        if self._stored is not None:
            outcomes = self._stored.outcomes
            unknown = {key for key in unknown if hash(key) in outcomes}
        # the stored keys, the workspaces' settings and the uncached contacts
        done |= self._load(names, wanted, unknown)
        contacts = BatchContacts(self)
        self._deciding = contacts.touched
        decided: list[tuple[str, str]] = []  # the outcomes' keys, in their order
        try:
            self._decide(items, done, contacts, result, source, decided=decided)
        except BaseException:
            self.forget(list(contacts.touched))
            raise
        finally:
            self._deciding = {}
        decision = Decision(result, contacts.events, list(contacts.touched), items, source,
                            read=contacts.read_only(), originators=contacts.originators)
        if in_flight:
            decision.keys = decided  # (workspace, event id) of each outcome
            self._in_flight_keys.update(decision.keys)
            self._pinned[id(decision)] = decision
        return decision

    def release(self, decision: Decision) -> None:
        """An in-flight decision is stored: its keys and aggregates are ordinary again."""
        self._in_flight_keys.difference_update(decision.keys)
        self._remember_stored(decision.keys)
        self._pinned.pop(id(decision), None)
        self._trim()

    @staticmethod
    def _decide(items: Sequence[CommandBase | Invalid], done: set[tuple[str, str]],
                contacts: BatchContacts, result: BatchResult, source: str, *,
                decided: list[tuple[str, str]]) -> None:
        """Apply each item in arrival order; fill ``result``, ``decided`` (the key of
        each outcome, in order) and ``contacts``' events. Once per item, so what the
        loop uses is bound to locals first and the counts are added up at the end."""
        drain, handlers, add_outcome = contacts.drain, HANDLERS, result.outcomes.append
        add_done, add_decided = done.add, decided.append
        accepted = expired = 0
        try:
            for item in items:
                if type(item) is Invalid:  # exact classes, as batch_contacts.scan
                    result.invalid += 1
                    result.dead_letters.append(DeadLetter(item.raw, item.reason, source,
                                                          item.workspace_id, item.event_id))
                    continue
                kind = type(item)
                if kind is ExpireInactive:  # a sweep: no outcome, no dedupe
                    handle(item, contacts)
                    expired += drain()
                    continue
                workspace_id, event_id = item.workspace_id, item.event_id
                key = (workspace_id, event_id)
                before = len(done)
                add_done(key)  # one hash of the key: in ``done`` already if it did not grow
                if len(done) == before:
                    result.duplicate += 1
                    result.duplicate_types[item.event_type] += 1
                    continue
                add_decided(key)
                try:
                    handlers[kind](item, contacts)  # handlers.handle, inline
                except LifecycleRejection as rejection:
                    reason: str | None = rejection.reason
                    result.rejected[rejection.reason] += 1
                else:
                    accepted += 1
                    reason = None
                expired += drain()
                add_outcome(_outcome(Outcome, (
                    workspace_id, event_id, item.contact_id, item.event_type,
                    item.occurred_at, "rejected" if reason else "accepted", reason)))
        finally:
            result.accepted += accepted
            result.expired += expired
