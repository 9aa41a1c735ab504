"""The handlers' view of the contact aggregates while one batch is decided; a batch's keys.

:class:`BatchContacts` loads through the processor's cache on a miss and remembers
what the batch touched, changed and only read (the :class:`Decision`'s read set).
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Sequence
from typing import Protocol

from schemas.commands import CommandBase, ExpireInactive, MergeContacts
from schemas.events import ConversationClosed, DomainEvent
from services.conversation.domain.contact import Contact, aggregate_id
from services.ingest.domain.normalise import Invalid


def scan(items: Sequence[CommandBase | Invalid], cache: Container[tuple[str, str]]
         ) -> tuple[set[tuple[str, str]], set[str], dict[uuid.UUID, tuple[str, str]]]:
    """One pass over ``items``: their dedupe keys (``CommandBase.dedup_key``; not of
    a sweep), their workspaces, and the aggregate ids of the contacts they name
    that are not in ``cache``."""
    keys: set[tuple[str, str]] = set()
    names: set[str] = set()
    wanted: dict[uuid.UUID, tuple[str, str]] = {}
    for item in items:
        # exact classes (none has subclasses): a pydantic class's isinstance that does
        # not match costs ~75 ns an item
        if type(item) is Invalid:
            continue
        kind = type(item)
        workspace_id = item.workspace_id
        names.add(workspace_id)
        key = (workspace_id, item.contact_id)
        if key not in cache:
            wanted[aggregate_id(*key)] = key
        if kind is ExpireInactive:
            continue  # a sweep: never de-duplicated
        if kind is MergeContacts:
            key = (workspace_id, item.secondary_contact_id)  # type: ignore[attr-defined]
            if key not in cache:
                wanted[aggregate_id(*key)] = key
        keys.add((workspace_id, item.event_id))
    return keys, names, wanted


class AggregateCache(Protocol):
    """What :class:`BatchContacts` needs of the batch processor."""

    @property
    def timeouts(self) -> dict[str, int | None]: ...

    def contact(self, workspace_id: str, contact_id: str) -> Contact: ...


class BatchContacts:
    """Unit of work over the aggregate cache: loads on miss, remembers what changed."""

    def __init__(self, processor: AggregateCache) -> None:
        self._processor = processor
        #: the batch's workspaces' timeouts (read by BatchProcessor.load before it starts)
        self._timeouts = processor.timeouts
        self.dirty: list[Contact] = []
        self.touched: dict[tuple[str, str], Contact] = {}
        #: version of each touched aggregate when the batch first touched it
        self._versions: dict[tuple[str, str], int] = {}
        #: the events recorded in the batch so far (:meth:`drain`), in order, and the
        #: aggregate id of each (the store's originator id: not looked up again per event)
        self.events: list[DomainEvent] = []
        self.originators: list[uuid.UUID] = []

    def get(self, workspace_id: str, contact_id: str) -> Contact:
        key = (workspace_id, contact_id)
        contact = self.touched.get(key)
        if contact is None:  # first time this batch: the cache's recent use is now
            contact = self.touched[key] = self._processor.contact(workspace_id, contact_id)
            self._versions[key] = contact.version
        self.dirty.append(contact)
        return contact

    def inactivity_timeout(self, workspace_id: str) -> int | None:
        return self._timeouts.get(workspace_id)

    def read_only(self) -> dict[uuid.UUID, int]:
        """The touched aggregates the batch did not change, with their version."""
        versions = self._versions
        return {contact.id: contact.version for key, contact in self.touched.items()
                if contact.version == versions[key]}

    def drain(self) -> int:
        """Move the events recorded since the last drain to :attr:`events` (their
        aggregates' ids to :attr:`originators`); return how many of them close a
        conversation after inactivity."""
        expired = 0
        for contact in self.dirty:
            pending = contact.pending
            if pending:
                for event in pending:
                    if type(event) is ConversationClosed and event.closed_by == "inactivity":
                        expired += 1
                self.events.extend(pending)  # Contact.collect() without a new list per event
                self.originators.extend([contact.id] * len(pending))
                pending.clear()
        self.dirty.clear()
        return expired
