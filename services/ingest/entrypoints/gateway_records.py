"""One gateway record -> its command, or its dead letter for the DLQ topic.

The one place that says how a record of the gateway topic is read and how an
invalid one is dead-lettered (CONTRACT §5: the raw value unchanged, headers
``reason``, ``source=kafka``, ``original_topic``, ``original_partition``,
``original_offset``). Both readers of the gateway topic use it: the ingest
service (``BONYCHAT_CONVERSATION_INPUT=commands``) and the conversation service
reading the gateway topic itself (``=gateway``, docs/runtime.md).
"""

from __future__ import annotations

from aiokafka import ConsumerRecord

from schemas.commands import CommandBase
from services.ingest.domain.normalise import Invalid, parse
from services.runtime.fetch import UndecodableRecord
from services.runtime.kafka import Headers, RecordBatches
from services.runtime.sinks import dead_letter_headers


def origin(record: ConsumerRecord[bytes, bytes]) -> Headers:
    """The DLQ headers that say where a gateway record came from."""
    return [("original_topic", record.topic.encode()),
            ("original_partition", str(record.partition).encode()),
            ("original_offset", str(record.offset).encode())]


def add_dead_letter(out: RecordBatches, dlq: str, record: ConsumerRecord[bytes, bytes],
                    item: Invalid) -> None:
    """Add ``record``'s dead letter to ``out``: the input's bytes as they came (even if
    not UTF-8; empty for an undecodable record), its key, the reason and its origin."""
    value = record.value if record.value is not None else b""
    out.add(dlq, record.key, value, dead_letter_headers(item.reason, "kafka", origin(record)))


def read_records(records: list[ConsumerRecord[bytes, bytes]], out: RecordBatches,
                 dlq: str) -> list[CommandBase | Invalid]:
    """Each record's command or invalid item, in order; each invalid one's dead letter
    added to ``out`` (for the topic ``dlq``). What both readers do with a fetch."""
    items: list[CommandBase | Invalid] = []
    add = items.append
    for record in records:
        # its command, or an invalid item (undecodable: the fetch's reason)
        if isinstance(record, UndecodableRecord):
            item: CommandBase | Invalid = Invalid("", record.reason)
        else:
            value = record.value
            item = parse(value if value is not None else b"")
        add(item)
        if type(item) is Invalid:
            add_dead_letter(out, dlq, record, item)
    return items
