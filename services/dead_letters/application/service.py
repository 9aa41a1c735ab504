"""Operator use cases: what became of an event, which dead letters there are, retry them.

Runtime-neutral: the database side is an :class:`OperationsStore`, the Kafka
DLQ topic (Kafka runtime only) a :class:`DeadLetterQueue`, and re-submission a
``submit`` function that runs commands through the normal pipeline (dedupe,
decide, store, project) and returns its :class:`BatchResult`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time
from typing import Any

from pydantic import ValidationError

from schemas.command_codec import read_command
from schemas.commands import CommandBase
from schemas.events import ContactMerged, DomainEvent
from services.conversation.application.processor import BatchResult
from services.dead_letters.application.ports import (
    DeadLetterEntry,
    DeadLetterFilter,
    DeadLetterQueue,
    EventReport,
    OperationsStore,
    RetryRecord,
    parse_entry_id,
)
from services.ingest.domain.normalise import Invalid, describe, parse
from services.projections.domain.metrics import calendar_date

Submit = Callable[[Sequence[CommandBase]], BatchResult]
#: a merge chain longer than this is corrupt data (merges never form cycles)
MAX_MERGE_HOPS = 1_000


def since_moment(text: str) -> datetime:
    """The ``since`` of a dead-letter listing: a UTC date ``YYYY-MM-DD`` (its midnight)
    or an RFC 3339 timestamp with offset. Anything else raises ``ValueError``."""
    try:
        return datetime.combine(calendar_date(text), time(), UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD nor a timestamp with offset")
    return moment.astimezone(UTC)


class UnknownDeadLetter(Exception):
    """A retry named a dead letter id that does not exist."""


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What one dead letter's retry did (or, in a dry run, would do)."""

    id: str
    outcome: str
    reason: str | None = None
    #: an entry already resolved by an earlier retry is skipped, not retried again
    skipped: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome, "reason": self.reason,
                "skipped": self.skipped}


@dataclass(slots=True)
class RetryReport:
    dry_run: bool
    results: list[RetryResult] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        counts = Counter("skipped" if r.skipped else r.outcome for r in self.results)
        return dict(sorted(counts.items()))

    def public(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "summary": self.summary(),
                "results": [r.public() for r in self.results]}


class Operations:
    """The operator commands' logic over a store, an optional DLQ topic and a pipeline."""

    def __init__(self, store: OperationsStore, *, dlq: DeadLetterQueue | None = None) -> None:
        self.store = store
        self.dlq = dlq

    # -- what became of one event -----------------------------------------------------
    def outcome(self, workspace_id: str, event_id: str) -> EventReport | None:
        """The event's outcome, the domain events it caused and its dead letters."""
        dead = self.dead_letters(DeadLetterFilter(workspace_id, event_id=event_id))
        stored = self.store.outcome(workspace_id, event_id)
        if stored is not None:
            caused = self._caused(stored.workspace_id, stored.event_id, stored.contact_id,
                                  stored.event_type) if stored.outcome == "accepted" else []
            return EventReport(workspace_id, event_id, stored.outcome, stored.reason, stored,
                               caused, dead)
        if not dead:
            return None
        last = dead[-1]
        reason = last.retry.reason if last.retry and last.retry.outcome == "invalid" \
            else last.reason
        return EventReport(workspace_id, event_id, "invalid", reason, None, [], dead)

    def _caused(self, workspace_id: str, event_id: str, contact_id: str,
                event_type: str) -> list[DomainEvent]:
        """Events with this source event id on the contact, its survivors and merged contacts."""
        contacts = [contact_id]
        if event_type == "contact.merge":
            contacts += [e.contact_id for e in self.store.merge_events(workspace_id, event_id)]
        found: dict[str, DomainEvent] = {}
        for start in contacts:
            current: str | None = start
            visited: set[str] = set()
            while current is not None and current not in visited \
                    and len(visited) < MAX_MERGE_HOPS:
                visited.add(current)
                events = self.store.aggregate_events(workspace_id, current)
                for event in events:
                    if event.source_event_id == event_id:
                        found.setdefault(event.event_id, event)
                merged = [e for e in events if isinstance(e, ContactMerged)]
                current = merged[-1].primary_contact_id if merged else None
        return sorted(found.values(), key=lambda e: (e.occurred_at, e.contact_id,
                                                     e.aggregate_version))

    # -- listing ------------------------------------------------------------------------
    def dead_letters(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        """Dead letters of the database and (Kafka runtime) the DLQ topic, oldest first."""
        entries = self.store.dead_letters(where)
        if self.dlq is not None:
            entries += self._with_retries(self.dlq.entries(where))
        return sorted(entries, key=lambda e: e.received_at)

    def _with_retries(self, entries: list[DeadLetterEntry]) -> list[DeadLetterEntry]:
        retries = self.store.retries([e.id for e in entries])
        return [_replace_retry(e, retries.get(e.id)) for e in entries]

    # -- retry ----------------------------------------------------------------------------
    def select(self, ids: Sequence[str] | None) -> tuple[list[DeadLetterEntry],
                                                         dict[int, int] | None]:
        """The entries a retry takes: the named ones, or every unresolved one.

        For ``--all`` in the Kafka runtime also the end offsets the DLQ was read to
        (None otherwise). Raises :class:`UnknownDeadLetter` for an unknown id.
        """
        if ids is not None:
            return self._named(ids), None
        entries = [e for e in self.store.dead_letters(DeadLetterFilter())
                   if e.retry is None or not e.retry.resolved]
        ends: dict[int, int] | None = None
        if self.dlq is not None:
            queued, ends = self.dlq.unresolved()
            entries += [e for e in self._with_retries(queued)
                        if e.retry is None or not e.retry.resolved]
        return entries, ends

    def _named(self, ids: Sequence[str]) -> list[DeadLetterEntry]:
        table_ids = [int(i) for i in ids if i.isdigit()]
        queue_ids = [i for i in ids if parse_entry_id(i) is not None]
        bad = [i for i in ids if not i.isdigit() and parse_entry_id(i) is None]
        if bad:
            raise UnknownDeadLetter(f"{bad[0]!r} is not a dead letter id "
                                    "(a number, or dlq-PARTITION-OFFSET)")
        found = self.store.dead_letters_by_id(table_ids)
        if queue_ids:
            if self.dlq is None:
                raise UnknownDeadLetter(f"{queue_ids[0]} is a Kafka DLQ id, but "
                                        "BONYCHAT_KAFKA_BOOTSTRAP is not set")
            found += self._with_retries(self.dlq.by_id(queue_ids))
        missing = set(ids) - {e.id for e in found}
        if missing:
            raise UnknownDeadLetter(f"no dead letter with id {sorted(missing)[0]}")
        order = {entry_id: index for index, entry_id in enumerate(ids)}
        return sorted(found, key=lambda e: order[e.id])

    def retry(self, entries: Sequence[DeadLetterEntry], submit: Submit | None, *,
              dry_run: bool = False) -> RetryReport:
        """Parse each entry again and run the valid ones through ``submit`` in one batch.

        Entries already resolved are skipped. Results are recorded only after
        ``submit`` returned: if it fails nothing is recorded (what it may have
        stored comes back as ``duplicate`` next time), so nothing is lost.
        """
        report = RetryReport(dry_run)
        todo = [e for e in entries if e.retry is None or not e.retry.resolved]
        parsed = [(e, reparse(e)) for e in todo]
        commands = [item for _, item in parsed if not isinstance(item, Invalid)]
        decided = self._preview(commands) if dry_run or submit is None else \
            self._submitted(commands, submit)
        now = datetime.now(UTC)
        records: dict[str, RetryRecord] = {}
        for entry in entries:
            if entry.retry is not None and entry.retry.resolved:
                report.results.append(RetryResult(entry.id, entry.retry.outcome,
                                                  entry.retry.reason, skipped=True))
        for entry, item in parsed:
            reason: str | None
            if isinstance(item, Invalid):
                outcome, reason = "invalid", item.reason
            else:
                outcome, reason = decided[id(item)]
            report.results.append(RetryResult(entry.id, outcome, reason))
            records[entry.id] = RetryRecord(outcome, reason, now)
        if not dry_run:
            self.store.record_retries(records)
        return report

    def _preview(self, commands: Iterable[CommandBase]) -> dict[int, tuple[str, str | None]]:
        """What a dry run reports: ``duplicate`` for a processed key, else ``valid``."""
        decided: dict[int, tuple[str, str | None]] = {}
        for cmd in commands:
            stored = self.store.outcome(cmd.workspace_id, cmd.event_id)
            decided[id(cmd)] = ("duplicate", None) if stored is not None else ("valid", None)
        return decided

    @staticmethod
    def _submitted(commands: Sequence[CommandBase], submit: Submit
                   ) -> dict[int, tuple[str, str | None]]:
        result = submit(commands) if commands else BatchResult()
        first = {(o.workspace_id, o.event_id): (o.outcome, o.reason) for o in result.outcomes}
        decided: dict[int, tuple[str, str | None]] = {}
        for cmd in commands:
            key = (cmd.workspace_id, cmd.event_id)
            decided[id(cmd)] = first.pop(key, ("duplicate", None))
        return decided

    def watermark(self, entries: Sequence[DeadLetterEntry], ends: dict[int, int],
                  report: RetryReport) -> dict[int, int]:
        """Per DLQ partition: the first record still unresolved after ``report``, else the end."""
        unresolved = {r.id for r in report.results if r.outcome == "invalid"}
        marks = dict(ends)
        for entry in entries:
            position = parse_entry_id(entry.id)
            if position is not None and entry.id in unresolved:
                partition, offset = position
                marks[partition] = min(marks.get(partition, offset), offset)
        return marks


def reparse(entry: DeadLetterEntry) -> CommandBase | Invalid:
    """The entry's raw input parsed as it first was: an envelope, or (``commands``) a
    command record of the conversation service."""
    if entry.source != "commands":
        return parse(entry.raw)
    try:
        return read_command(entry.raw)
    except ValidationError as exc:
        return Invalid(entry.raw, f"undecodable command: {describe(exc)}")


def _replace_retry(entry: DeadLetterEntry, retry: RetryRecord | None) -> DeadLetterEntry:
    return replace(entry, retry=retry)
