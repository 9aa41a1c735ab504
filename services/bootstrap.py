"""The composition root: builds stores and pipelines from one Settings object.

Nothing is connected at import time; callers ask for what they need here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .conversation.ports import EventStore
from .embedded import EmbeddedPipeline
from .projections.ports import ReadModelStore
from .settings import Settings


class StorageUnavailable(Exception):
    """The configured database cannot be opened or reached."""


@dataclass
class Stores:
    """The event store and read model of one database, and how to close them."""

    events: EventStore
    read_models: ReadModelStore
    close: Callable[[], None]


def open_stores(settings: Settings) -> Stores:
    """Open (and create if needed) the stores named by ``settings.database_url``."""
    if settings.is_postgres:
        from .postgres import open_postgres_stores

        return open_postgres_stores(settings.database_url)
    return _open_sqlite(settings.sqlite_path())


def _open_sqlite(path: str) -> Stores:
    from eventsourcing.persistence import PersistenceError
    from eventsourcing.sqlite import SQLiteDatastore

    from .conversation.store_sqlite import SQLiteEventStore, open_datastore
    from .projections.store_sqlite import SQLiteReadModelStore

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StorageUnavailable(f"cannot open database {path!r}: folder {folder} does not exist")
    for attempt in (1, 2):  # 2: another process created the tables at the same moment
        datastore: SQLiteDatastore | None = None
        try:
            datastore = open_datastore(path)
            events = SQLiteEventStore(datastore)
            read_models = SQLiteReadModelStore(datastore)
        except PersistenceError as exc:
            if datastore is not None:
                datastore.close()
            if attempt == 2:
                raise StorageUnavailable(f"cannot open database {path!r}: {exc}") from exc
        else:
            return Stores(events, read_models, datastore.close)
    raise AssertionError("unreachable")


def embedded_pipeline(stores: Stores, settings: Settings) -> EmbeddedPipeline:
    return EmbeddedPipeline(stores.events, stores.read_models, batch_size=settings.batch_size)
