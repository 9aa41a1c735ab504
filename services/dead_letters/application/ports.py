"""What operators read and repair: event outcomes and dead letters, as records and ports.

A *dead letter* is input that could not be processed (CONTRACT §2), kept with
its raw text and reason: rows of the ``dead_letters`` table (embedded import,
HTTP on the embedded store, undecodable command records) or records of the
Kafka DLQ topic. Each has a stable id: the table's row id (``"17"``) or
``dlq-PARTITION-OFFSET`` for a DLQ record. A retry's result is kept per id in
the ``dead_letter_retries`` table of the database (both runtimes).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from schemas.events import DomainEvent

#: Where a dead letter came from, as shown (``import`` is stored for files).
SOURCES: Final = ("file", "http", "kafka", "commands")
#: A retry's result: the three outcomes of CONTRACT §2, or still invalid.
RetryOutcome = Literal["accepted", "rejected", "duplicate", "invalid"]
#: A retry that ended here needs no further retry.
RESOLVED: Final = frozenset({"accepted", "rejected", "duplicate"})


@dataclass(frozen=True, slots=True)
class RetryRecord:
    """The latest retry of one dead letter."""

    outcome: str
    reason: str | None
    retried_at: datetime
    attempts: int = 1

    @property
    def resolved(self) -> bool:
        return self.outcome in RESOLVED


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One dead letter as an operator sees it."""

    id: str
    received_at: datetime
    source: str
    reason: str
    raw: str
    workspace_id: str | None = None
    event_id: str | None = None
    #: partition and offset of the gateway record it came from (Kafka only)
    partition: int | None = None
    offset: int | None = None
    retry: RetryRecord | None = None

    def public(self) -> dict[str, Any]:
        """The JSON object of ``bonychat dead-letters --format json`` (flat, CSV-ready)."""
        retry = self.retry
        return {
            "id": self.id, "received_at": _utc(self.received_at), "source": self.source,
            "workspace_id": self.workspace_id, "event_id": self.event_id,
            "reason": self.reason, "partition": self.partition, "offset": self.offset,
            "retry_outcome": retry.outcome if retry else None,
            "retry_reason": retry.reason if retry else None,
            "retried_at": _utc(retry.retried_at) if retry else None,
            "retry_attempts": retry.attempts if retry else 0,
            "raw": self.raw,
        }


PUBLIC_FIELDS: Final = ("id", "received_at", "source", "workspace_id", "event_id", "reason",
                        "partition", "offset", "retry_outcome", "retry_reason", "retried_at",
                        "retry_attempts", "raw")


#: Files were imported under the source name ``import``.
STORED_SOURCES = {"file": ("import", "file")}


def shown_source(stored: str) -> str:
    """The source a stored dead letter is shown with (``import`` rows are ``file``)."""
    return "file" if stored == "import" else stored


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to list; ``None`` = any."""

    workspace_id: str | None = None
    since: datetime | None = None
    source: str | None = None
    event_id: str | None = None

    def matches(self, entry: DeadLetterEntry) -> bool:
        return ((self.workspace_id is None or entry.workspace_id == self.workspace_id)
                and (self.since is None or entry.received_at >= self.since)
                and (self.source is None or entry.source == self.source)
                and (self.event_id is None or entry.event_id == self.event_id))

    def terms(self) -> list[tuple[str, str, Any]]:
        """The filter as ``(column, operator, value)`` of the ``dead_letters`` table, for a
        SQL store to write in its dialect: ``=``, ``>=`` (a datetime) or ``in`` (a tuple
        of stored source names: a file source is also stored as ``import``)."""
        found: list[tuple[str, str, Any]] = []
        if self.workspace_id is not None:
            found.append(("workspace_id", "=", self.workspace_id))
        if self.event_id is not None:
            found.append(("event_id", "=", self.event_id))
        if self.since is not None:
            found.append(("received_at", ">=", self.since))
        if self.source is not None:
            found.append(("source", "in", STORED_SOURCES.get(self.source, (self.source,))))
        return found


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """A row of the outcome log: the first processing of ``(workspace_id, event_id)``."""

    workspace_id: str
    event_id: str
    contact_id: str
    event_type: str
    occurred_at: datetime
    outcome: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class EventReport:
    """What became of one gateway event (``bonychat outcome``, ``GET …/events/{id}``)."""

    workspace_id: str
    event_id: str
    outcome: str
    reason: str | None = None
    stored: StoredOutcome | None = None
    domain_events: list[DomainEvent] = field(default_factory=list)
    dead_letters: list[DeadLetterEntry] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        stored = self.stored
        return {
            "workspace_id": self.workspace_id, "event_id": self.event_id,
            "outcome": self.outcome, "reason": self.reason,
            "contact_id": stored.contact_id if stored else None,
            "event_type": stored.event_type if stored else None,
            "occurred_at": _utc(stored.occurred_at) if stored else None,
            "domain_events": [e.model_dump(mode="json") for e in self.domain_events],
            "dead_letters": [d.public() for d in self.dead_letters],
        }


def _utc(moment: datetime) -> str:
    """RFC 3339 UTC with ``Z``, as the conversation rows write times."""
    return moment.isoformat().replace("+00:00", "Z")


class OperationsStore(Protocol):
    """The database side of the operator commands (SQLite and PostgreSQL)."""

    def outcome(self, workspace_id: str, event_id: str) -> StoredOutcome | None:
        """The outcome log's row of one gateway event, if it was processed."""
        ...

    def aggregate_events(self, workspace_id: str, contact_id: str) -> list[DomainEvent]:
        """Every stored event of one contact's aggregate, in version order."""
        ...

    def merge_events(self, workspace_id: str, event_id: str) -> list[DomainEvent]:
        """The ``ContactMerged`` events caused by one ``contact.merge`` (scans merges)."""
        ...

    def dead_letters(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        """Dead letters of the table matching ``where``, oldest first, with their retry."""
        ...

    def dead_letters_by_id(self, ids: Collection[int]) -> list[DeadLetterEntry]:
        """Rows of the table by id, with their retry (unknown ids are left out)."""
        ...

    def retries(self, ids: Collection[str]) -> dict[str, RetryRecord]:
        """The latest retry of each of these dead letter ids that has one."""
        ...

    def record_retries(self, results: Mapping[str, RetryRecord]) -> None:
        """Keep each id's new retry result (one transaction; attempts are counted up).

        A resolved result is never replaced: of two retries running at once, the
        first resolution stays (the other one's ``duplicate`` is dropped).
        """
        ...

    def close(self) -> None:
        ...


class DeadLetterQueue(Protocol):
    """The Kafka DLQ topic, read by the operator commands (Kafka runtime only)."""

    def entries(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        """Every DLQ record matching ``where``, in partition then offset order."""
        ...

    def by_id(self, ids: Sequence[str]) -> list[DeadLetterEntry]:
        """The records with these ``dlq-P-O`` ids (unknown ones are left out)."""
        ...

    def unresolved(self) -> tuple[list[DeadLetterEntry], dict[int, int]]:
        """Records from the retry group's committed offsets to the current end.

        Returns them and the end offset of each partition they were read to.
        """
        ...

    def commit_watermark(self, offsets: Mapping[int, int]) -> None:
        """Move the retry group's committed offset of each partition to the given one."""
        ...


def entry_id(partition: int, offset: int) -> str:
    """The id of the DLQ topic's record at ``partition``/``offset``: ``dlq-P-O``."""
    return f"dlq-{partition}-{offset}"


def parse_entry_id(text: str) -> tuple[int, int] | None:
    """``(partition, offset)`` of a ``dlq-P-O`` id, or None if it is not one."""
    parts = text.split("-")
    if len(parts) == 3 and parts[0] == "dlq" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None
