"""The composition root: builds stores and pipelines from one Settings object.

The only package that names concrete adapters for the embedded runtime and the
CLI (``sqlite``, ``postgres``, ``dead_letters``); nothing is connected at import
time, callers ask for what they need here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.composition.stores import HOW_TO_CREATE, StorageUnavailable, StoreMissing, Stores
from services.settings import Settings

if TYPE_CHECKING:  # imported where built: a replay or a query never loads the deciding side
    from services.in_process.pipeline import EmbeddedPipeline
    from services.projections.application.projector import ConversationProjection

__all__ = ["HOW_TO_CREATE", "StorageUnavailable", "StoreMissing", "Stores", "embedded_pipeline",
           "open_stores", "projection", "require_store", "writer_pipeline"]


def open_stores(settings: Settings, *, create: bool = True) -> Stores:
    """Open the stores named by ``settings.database_url``.

    With ``create`` (the default) a missing SQLite file or missing PostgreSQL
    tables are created; without it they raise :class:`StoreMissing`.
    """
    if settings.is_postgres:
        from services.composition.postgres import open_postgres_stores

        return open_postgres_stores(settings.database_url, create=create)
    from services.composition.sqlite import open_sqlite_stores, require_sqlite

    path = settings.sqlite_path()
    if not create:
        require_sqlite(path)
    return open_sqlite_stores(path)


def require_store(settings: Settings) -> None:
    """Raise :class:`StoreMissing` unless the configured store exists; creates nothing."""
    if settings.is_postgres:
        open_stores(settings, create=False).close()
    else:
        from services.composition.sqlite import require_sqlite

        require_sqlite(settings.sqlite_path())


def embedded_pipeline(stores: Stores, settings: Settings) -> EmbeddedPipeline:
    from services.in_process.pipeline import EmbeddedPipeline

    return EmbeddedPipeline(stores.events, stores.read_models, batch_size=settings.batch_size)


def writer_pipeline(stores: Stores) -> EmbeddedPipeline:
    """The pipeline the bulk import's writer process builds on its own stores."""
    from services.in_process.pipeline import EmbeddedPipeline

    return EmbeddedPipeline(stores.events, stores.read_models)


def projection(stores: Stores) -> ConversationProjection:
    """The read-model projection alone (``bonychat replay``): the same one the pipeline uses."""
    from services.projections.application.projector import ConversationProjection

    return ConversationProjection(stores.read_models)
