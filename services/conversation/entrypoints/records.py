"""The conversation service's command records: decoding, position names, decided batches.

Helpers of :mod:`services.conversation.entrypoints.kafka` (which re-exports them):
a record that does not decode becomes an invalid item (a dead letter with its
reason), and each partition is tracked in storage under ``{topic}:{partition}``.
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
from services.runtime.fetch import UndecodableRecord

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


@dataclass(slots=True)
class _Decided:
    """A decided group of partition batches, to be committed in one transaction."""

    group: Group
    decision: Decision
    position: Position
    started: float
    commit: asyncio.Future[BatchResult] | None = field(default=None)
