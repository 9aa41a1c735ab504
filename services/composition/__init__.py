"""The composition root: builds stores and pipelines from one Settings object.

Nothing is connected at import time; callers ask for what they need here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from services.conversation.application.ports import EventStore
from services.in_process.pipeline import EmbeddedPipeline
from services.projections.application.ports import ReadModelStore
from services.settings import Settings


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


def open_stores(settings: Settings, *, create: bool = True) -> Stores:
    """Open the stores named by ``settings.database_url``.

    With ``create`` (the default) a missing SQLite file or missing PostgreSQL
    tables are created; without it they raise :class:`StoreMissing`.
    """
    if settings.is_postgres:
        from services.composition.postgres import open_postgres_stores

        return open_postgres_stores(settings.database_url, create=create)
    path = settings.sqlite_path()
    if not create:
        _require_sqlite(path)
    return _open_sqlite(path)


def require_store(settings: Settings) -> None:
    """Raise :class:`StoreMissing` unless the configured store exists; creates nothing."""
    if settings.is_postgres:
        open_stores(settings, create=False).close()
    else:
        _require_sqlite(settings.sqlite_path())


def _require_sqlite(path: str) -> None:
    if path != ":memory:" and not os.path.isfile(path):
        raise StoreMissing(f"no database at {os.path.abspath(path)}: {HOW_TO_CREATE}")


def _open_sqlite(path: str) -> Stores:
    from eventsourcing.persistence import PersistenceError
    from eventsourcing.sqlite import SQLiteDatastore

    from services.conversation.adapters.store_sqlite import SQLiteEventStore, open_datastore
    from services.projections.adapters.store_sqlite import SQLiteReadModelStore

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
