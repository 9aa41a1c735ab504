"""SQLite composition: a file path -> eventsourcing datastore -> both stores."""

from __future__ import annotations

import os

from eventsourcing.persistence import PersistenceError
from eventsourcing.sqlite import SQLiteDatastore

from services.composition.stores import HOW_TO_CREATE, StorageUnavailable, StoreMissing, Stores
from services.conversation.adapters.store_sqlite import SQLiteEventStore, open_datastore
from services.projections.adapters.store_sqlite import SQLiteReadModelStore


def require_sqlite(path: str) -> None:
    if path != ":memory:" and not os.path.isfile(path):
        raise StoreMissing(f"no database at {os.path.abspath(path)}: {HOW_TO_CREATE}")


def open_sqlite_stores(path: str) -> Stores:
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
