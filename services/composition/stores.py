"""What the composition root hands out: the stores of one database, and its errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.conversation.application.ports import EventStore
from services.projections.application.ports import ReadModelStore


class StorageUnavailable(Exception):
    """The configured database cannot be opened or reached."""


class StoreMissing(StorageUnavailable):
    """A command that only works on an existing store found none (and created none)."""


HOW_TO_CREATE = ("create it with 'bonychat import FILE', or choose another with "
                 "--database-url or BONYCHAT_DATABASE_URL")


@dataclass
class Stores:
    """The event store and read model of one database, and how to close them."""

    events: EventStore
    read_models: ReadModelStore
    close: Callable[[], None]
