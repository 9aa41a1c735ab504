"""The conversation service's records: decoding, position names, decided batches.

Helpers of :mod:`services.conversation.entrypoints.kafka` (which re-exports them):
a command record that does not decode becomes an invalid item (a dead letter
with its reason), and each partition is tracked in storage under
``{topic}:{partition}``. With ``BONYCHAT_CONVERSATION_INPUT=gateway`` the
service also reads gateway records (:func:`read_group`): each is parsed as
ingest parses it, and an invalid one becomes a record for the DLQ topic built by
ingest's own code, not a dead letter in storage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from schemas.command_codec import read_command
from schemas.commands import CommandBase
from services.conversation.application.ports import Position
from services.conversation.application.processor import BatchResult, Decision
from services.ingest.domain.normalise import Invalid, describe
from services.ingest.entrypoints.gateway_records import read_records
from services.runtime.fetch import UndecodableRecord
from services.runtime.kafka import RecordBatches
from services.runtime.observability import IngestTally

SERVICE = "conversation"
DEAD_LETTER_SOURCE = "commands"


def decode(record: ConsumerRecord[bytes, bytes]) -> CommandBase | Invalid:
    """A command record's body, or an invalid item (dead letter) if it does not decode."""
    if isinstance(record, UndecodableRecord):
        return Invalid("", record.reason)
    raw = record.value if record.value is not None else b""
    try:
        body = read_command(raw)
    except ValidationError as exc:
        text = raw.decode("utf-8", errors="replace")
        return Invalid(text, f"undecodable command at {record.topic}:{record.partition}@"
                             f"{record.offset}: {describe(exc)}")
    return body


def position_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


Records = list[ConsumerRecord[bytes, bytes]]
Batches = dict[TopicPartition, Records]
Group = list[tuple[TopicPartition, Records]]
Items = list[CommandBase | Invalid]


def read_group(group: Group, gateway: str | None, dlq: str, out: RecordBatches | None
               ) -> tuple[Items, Items]:
    """The items to decide, and what was read from the gateway topic ``gateway``.

    A command record is decoded (:func:`decode`); a gateway record is parsed as
    ingest parses it: a valid one is decided like its command, an invalid one is
    added to ``out`` as ingest would write it to the DLQ and is not decided (it
    never was: ingest does not forward it). The second list (valid and invalid
    gateway items) is what ingest would have counted.
    """
    items: Items = []
    gateway_items: Items = []
    for tp, records in group:
        if tp.topic != gateway:
            items.extend(map(decode, records))
            continue
        assert out is not None
        read = read_records(records, out, dlq)
        gateway_items.extend(read)
        items.extend([item for item in read if type(item) is not Invalid])
    return items, gateway_items


@dataclass(slots=True)
class _Decided:
    """A decided group of partition batches, to be committed in one transaction."""

    group: Group
    decision: Decision
    position: Position
    started: float
    commit: asyncio.Future[BatchResult] | None = field(default=None)
    #: gateway input: what was read from the gateway topic, tallied as ingest counted
    #: it (``observability.tally_ingest``; None: nothing was)
    ingest_tally: IngestTally | None = None
    #: gateway input: the DLQ records of its invalid gateway records (acknowledged
    #: before the transaction that moves the position past them is committed)
    dead_letters: RecordBatches | None = None
