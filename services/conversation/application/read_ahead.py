"""A batch's store read issued before the batch is decided (the Kafka service's overlap).

The conversation service reads what deciding a fetch needs -- which of its dedupe
keys are stored, the events of the contacts it names that are not cached, its
workspaces' settings -- while the previous fetch is decided
(:meth:`.processor.BatchProcessor.read_ahead`). Between that read and the
decision, other batches are decided, stored and settled, and the cache changes;
the answer is used only where it is still true when the batch is decided
(:meth:`.processor.BatchProcessor.decide` with ``ahead``):

- a key is seen if the read found it stored, or it is decided and in flight
  (``BatchProcessor._in_flight_keys``, as without a read ahead), or it was
  settled since the read was issued (:attr:`ReadAhead.settled`: it may have been
  stored after the probe ran);
- the events read of a contact enter the cache only if the contact is still not
  cached, and did not leave the cache since the read was issued
  (:attr:`ReadAhead.evicted`: it may have had events stored after the read);
  such a contact is read again, in the decision's own round trip;
- after :meth:`.processor.BatchProcessor.forget` (a failed commit, a conflict, a
  rebalance) every read ahead is void (:attr:`ReadAhead.valid`): the batch is then
  read as if there were none.

Workspace settings read ahead are those committed before the read, which is
issued after the batch's records were fetched: a change committed before a
record was produced is seen by its decision (CONTRACT §6.1), as before.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection, Container, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.commands import CommandBase
from schemas.events import DomainEvent
from services.ingest.domain.normalise import Invalid


@dataclass(slots=True, eq=False)
class ReadAhead:
    """The store's answer for one batch, read before it is decided."""

    #: the batch (its decision must be given this very sequence)
    items: Sequence[CommandBase | Invalid] = ()
    #: the batch's dedupe keys (all of them were asked)
    keys: set[tuple[str, str]] = field(default_factory=set)
    #: its workspaces (their settings were read)
    names: set[str] = field(default_factory=set)
    #: the aggregates asked: the contacts it names that were not cached
    asked: dict[uuid.UUID, tuple[str, str]] = field(default_factory=dict)
    #: of ``keys``, those stored when the read ran
    seen: set[tuple[str, str]] = field(default_factory=set)
    #: stored events of the aggregates asked (contacts and workspace settings)
    found: dict[uuid.UUID, list[DomainEvent]] = field(default_factory=dict)
    #: keys settled (stored) since it was registered: maybe after the probe ran
    settled: set[tuple[str, str]] = field(default_factory=set)
    #: aggregates that left the cache since it was registered
    evicted: set[uuid.UUID] = field(default_factory=set)
    #: False once the processor forgot everything (its cache, the decisions in flight)
    valid: bool = True

    def uncached(self, cache: Container[tuple[str, str]]) -> dict[uuid.UUID, tuple[str, str]]:
        """Of the contacts asked, those still not in ``cache`` (one cached since the read
        may hold unsaved events; one cached then and evicted since is loaded on use)."""
        return {oid: key for oid, key in self.asked.items() if key not in cache}


class ReadsAhead:
    """The reads ahead a processor keeps up to date (registered before they ask the store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # registered in a worker thread, settled in another
        self._open: list[ReadAhead] = []

    def register(self, ahead: ReadAhead) -> None:
        with self._lock:
            self._open.append(ahead)

    def close(self, ahead: ReadAhead) -> None:
        """``ahead`` is used or dropped: nothing more is recorded in it."""
        with self._lock:
            if ahead in self._open:
                self._open.remove(ahead)

    def settled(self, keys: list[tuple[str, str]]) -> None:
        if self._open:
            with self._lock:
                for ahead in self._open:
                    ahead.settled.update(keys)

    def evicted(self, originator_id: uuid.UUID) -> None:
        if self._open:
            with self._lock:
                for ahead in self._open:
                    ahead.evicted.add(originator_id)

    def void(self) -> None:
        """Every open read ahead is stale (the processor forgot its state)."""
        with self._lock:
            for ahead in self._open:
                ahead.valid = False
            self._open = []


def still_true(ahead: ReadAhead, unknown: Collection[tuple[str, str]],
               wanted: Mapping[uuid.UUID, object], workspaces: Mapping[uuid.UUID, str]
               ) -> tuple[set[tuple[str, str]], set[tuple[str, str]], list[uuid.UUID]]:
    """What ``ahead`` answers of a batch being decided, and what is left to ask.

    ``unknown``: its keys neither in flight nor otherwise known; ``wanted``: the
    aggregates of its contacts not cached now; ``workspaces``: its settings
    aggregates. Returns the keys of ``unknown`` seen (stored when read, or
    settled since), the keys ``ahead`` did not ask, and the aggregates to read
    again (not asked then, or evicted since) or at all.
    """
    asked = set(unknown)
    seen = asked & (ahead.seen | ahead.settled)
    evicted = ahead.evicted
    missing = [oid for oid in wanted if oid in evicted or oid not in ahead.asked]
    missing.extend(oid for oid, ws in workspaces.items() if ws not in ahead.names)
    return seen, asked - ahead.keys, missing
