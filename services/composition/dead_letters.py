"""Builds :class:`Operations` from settings (the operator commands' composition root).

Opening never creates a store: a missing SQLite file or an unreachable
PostgreSQL is :class:`~services.composition.StorageUnavailable`. With
``BONYCHAT_KAFKA_BOOTSTRAP`` set, the Kafka DLQ topic is read as well.
"""

from __future__ import annotations

from services.composition import StorageUnavailable, require_store
from services.dead_letters.application.ports import OperationsStore
from services.dead_letters.application.service import Operations
from services.runtime.topics import Topics, group_id
from services.settings import Settings

#: the consumer group whose committed offsets mark what ``retry --all`` resolved
RETRY_SERVICE = "dlq-retry"


def open_operations_store(settings: Settings) -> OperationsStore:
    """The operator queries' store; a missing store is :class:`StoreMissing`, never created."""
    require_store(settings)
    if settings.is_postgres:
        import psycopg

        from services.composition.postgres import one_line, parse_url
        from services.dead_letters.adapters.store_postgres import PostgresOperationsStore

        target = parse_url(settings.database_url)
        try:
            return PostgresOperationsStore(target)
        except psycopg.Error as exc:
            raise StorageUnavailable(f"cannot connect to PostgreSQL {target.describe()}: "
                                     f"{one_line(exc)}") from None
    from services.dead_letters.adapters.store_sqlite import SQLiteOperationsStore

    path = settings.sqlite_path()
    try:
        return SQLiteOperationsStore(path)
    except Exception as exc:
        raise StorageUnavailable(f"cannot open database {path!r}: {exc}") from None


def open_operations(settings: Settings) -> Operations:
    """The operator commands' logic on the configured database (and DLQ topic)."""
    store = open_operations_store(settings)
    dlq = None
    if settings.kafka_bootstrap:  # the Kafka client is imported only then (~0.1 s)
        from services.dead_letters.adapters.kafka import KafkaDeadLetterQueue

        dlq = KafkaDeadLetterQueue(
            bootstrap=settings.kafka_bootstrap, topic=Topics.from_settings(settings).dlq,
            retry_group=group_id(settings.consumer_group_prefix, RETRY_SERVICE))
    return Operations(store, dlq=dlq)
