"""The operator use cases (services.dead_letters.application.service) over in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from schemas.commands import CommandBase
from schemas.events import DomainEvent
from services.conversation.application.ports import Outcome
from services.conversation.application.processor import BatchResult
from services.dead_letters.application.ports import (
    DeadLetterEntry,
    DeadLetterFilter,
    RetryRecord,
    StoredOutcome,
)
from services.dead_letters.application.service import Operations, UnknownDeadLetter

AT = datetime(2026, 11, 24, 10, tzinfo=UTC)


def line(event_id: str, *, valid: bool = True) -> str:
    body = {"event_id": event_id, "type": "message.received", "workspace_id": "ws1",
            "contact_id": "c1", "occurred_at": "2026-11-24T10:00:00Z"}
    if valid:
        body["channel"] = {"type": "sms"}
    return json.dumps(body)


class FakeStore:
    def __init__(self, entries: list[DeadLetterEntry]) -> None:
        self.entries = entries
        self.recorded: dict[str, RetryRecord] = {}

    def outcome(self, workspace_id: str, event_id: str) -> StoredOutcome | None:
        return None

    def aggregate_events(self, workspace_id: str, contact_id: str) -> list[DomainEvent]:
        return []

    def merge_events(self, workspace_id: str, event_id: str) -> list[DomainEvent]:
        return []

    def dead_letters(self, where: DeadLetterFilter) -> list[DeadLetterEntry]:
        return [replace(e, retry=self.recorded.get(e.id, e.retry)) for e in self.entries
                if where.matches(e)]

    def dead_letters_by_id(self, ids: Collection[int]) -> list[DeadLetterEntry]:
        return [e for e in self.dead_letters(DeadLetterFilter()) if int(e.id) in ids]

    def retries(self, ids: Collection[str]) -> dict[str, RetryRecord]:
        return {i: self.recorded[i] for i in ids if i in self.recorded}

    def record_retries(self, results: Mapping[str, RetryRecord]) -> None:
        self.recorded.update(results)

    def close(self) -> None:
        pass


def entry(entry_id: str, raw: str) -> DeadLetterEntry:
    return DeadLetterEntry(entry_id, AT, "file", "bad", raw, "ws1", None)


def accept_all(commands: Sequence[CommandBase]) -> BatchResult:
    result = BatchResult()
    seen: set[tuple[str, str]] = set()
    for cmd in commands:
        if cmd.dedup_key not in seen:
            seen.add(cmd.dedup_key)
            result.outcomes.append(Outcome(cmd.workspace_id, cmd.event_id, cmd.contact_id,
                                           cmd.event_type, cmd.occurred_at, "accepted"))
    return result


def test_retry_reports_each_entry_and_a_repeated_key_is_a_duplicate() -> None:
    store = FakeStore([entry("1", line("a")), entry("2", line("a")),
                       entry("3", line("b", valid=False))])
    ops = Operations(store)
    entries, ends = ops.select(None)
    assert ends is None
    report = ops.retry(entries, accept_all)
    assert [(r.id, r.outcome) for r in report.results] == [
        ("1", "accepted"), ("2", "duplicate"), ("3", "invalid")]
    assert store.recorded["3"].reason is not None and "channel" in store.recorded["3"].reason
    # resolved entries are not taken again; the invalid one is
    again, _ = ops.select(None)
    assert [e.id for e in again] == ["3"]


def test_a_failing_submit_records_nothing() -> None:
    store = FakeStore([entry("1", line("a")), entry("2", line("b", valid=False))])
    ops = Operations(store)

    def broken(commands: Sequence[CommandBase]) -> BatchResult:
        raise RuntimeError("database went away")

    entries, _ = ops.select(None)
    with pytest.raises(RuntimeError):
        ops.retry(entries, broken)
    assert store.recorded == {}
    assert [e.id for e in ops.select(None)[0]] == ["1", "2"]


def test_dry_run_records_nothing_and_calls_no_pipeline() -> None:
    store = FakeStore([entry("1", line("a"))])
    report = Operations(store).retry(store.entries, None, dry_run=True)
    assert [(r.id, r.outcome) for r in report.results] == [("1", "valid")]
    assert store.recorded == {}


def test_unknown_ids_are_refused() -> None:
    ops = Operations(FakeStore([entry("1", line("a"))]))
    with pytest.raises(UnknownDeadLetter, match="7"):
        ops.select(["1", "7"])
    with pytest.raises(UnknownDeadLetter, match="BOOTSTRAP"):
        ops.select(["dlq-0-3"])
    with pytest.raises(UnknownDeadLetter, match="not a dead letter id"):
        ops.select(["dlq-x"])


def test_watermark_stops_at_the_first_entry_still_invalid() -> None:
    store = FakeStore([])
    ops = Operations(store)
    queued = [entry("dlq-0-4", line("a")), entry("dlq-0-7", line("b", valid=False)),
              entry("dlq-1-2", line("c"))]
    report = ops.retry(queued, accept_all)
    assert ops.watermark(queued, {0: 10, 1: 5, 2: 0}, report) == {0: 7, 1: 5, 2: 0}


def test_a_command_record_is_retried_as_a_command() -> None:
    from services.ingest.domain.normalise import parse
    from services.runtime.sinks import encode_command

    command = parse(line("k"))
    assert isinstance(command, CommandBase)
    good = replace(entry("1", encode_command(command).decode()), source="commands")
    bad = replace(entry("2", '{"body": {"type": "nope"}}'), source="commands")
    store = FakeStore([good, bad])
    report = Operations(store).retry(store.entries, accept_all)
    assert [(r.id, r.outcome) for r in report.results] == [("1", "accepted"),
                                                           ("2", "invalid")]
    assert (report.results[1].reason or "").startswith("undecodable command")
