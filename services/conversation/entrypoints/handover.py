"""Switching a deployment to ``BONYCHAT_CONVERSATION_INPUT=gateway``: where ingest stopped.

Until the switch, ingest read the gateway topic and the conversation service
tracked only the command topic's partitions, so a gateway partition has no
tracked position in PostgreSQL yet. Reading it from the beginning would decide
every retained record again (each a ``duplicate``, harmless but slow) and
dead-letter every retained invalid record a second time. Instead such a
partition starts where ingest's consumer group committed: every record before
that offset was forwarded to the command topic, which the service still reads.
Records after it may have been forwarded too (ingest commits after the acks, at
most every ``BONYCHAT_KAFKA_COMMIT_INTERVAL_MS``): they are de-duplicated by
event id, and an invalid one may reach the DLQ twice -- as after an ingest crash.
A partition ingest never committed starts from the beginning (CONTRACT §5).
"""

from __future__ import annotations

from collections.abc import Collection

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def ingest_offsets(bootstrap: str, group: str, partitions: Collection[TopicPartition]
                         ) -> dict[TopicPartition, int]:
    """The offsets ingest's consumer ``group`` committed for ``partitions`` (those it has)."""
    if not partitions:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
