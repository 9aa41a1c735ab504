"""The handlers' view of the contact aggregates while one batch is decided.

:class:`BatchContacts` loads through the processor's cache on a miss and remembers
what the batch touched, changed and only read (the :class:`Decision`'s read set).
"""

from __future__ import annotations

import uuid
from typing import Protocol

from schemas.events import ConversationClosed, DomainEvent
from services.conversation.domain.contact import Contact


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

    def drain(self, events: list[DomainEvent]) -> int:
        """Move the events recorded since the last drain to ``events``; return how many
        of them close a conversation after inactivity."""
        expired = 0
        for contact in self.dirty:
            pending = contact.pending
            if pending:
                for event in pending:
                    if type(event) is ConversationClosed and event.closed_by == "inactivity":
                        expired += 1
                events.extend(pending)  # Contact.collect() without a new list per event
                pending.clear()
        self.dirty.clear()
        return expired
