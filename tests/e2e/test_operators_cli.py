"""Issue 9 §3: ``bonychat outcome`` and ``bonychat dead-letters [retry]`` as an operator runs them.

The installed command against an SQLite file (the PostgreSQL and Kafka runs are
in ``tests/integration/test_operators_*.py``).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import Cli, assert_one_line_error, envelope

pytestmark = pytest.mark.e2e

USER = {"type": "user", "id": "u1"}
NO_CHANNEL = envelope("e-fix", "message.received", "c7", "2026-11-24T12:00:00Z")
NO_OFFSET = envelope("e-tz", "message.received", "c8", "2026-11-24T12:00:00",
                     channel={"type": "sms"})
LINES = [
    envelope("e1", "message.received", "c1", "2026-11-24T09:00:00Z",
             channel={"type": "whatsapp"}),
    envelope("e2", "conversation.close", "c1", "2026-11-24T09:01:00Z", actor=USER),
    envelope("e3", "conversation.close", "c1", "2026-11-24T09:02:00Z", actor=USER),
    envelope("e4", "message.received", "c2", "2026-11-24T10:00:00Z",
             channel={"type": "telegram"}),
    envelope("m1", "contact.merge", "c1", "2026-11-24T10:30:00Z",
             data={"secondary_contact_id": "c2"}),
    envelope("e5", "message.received", "c2", "2026-11-24T11:00:00Z",
             channel={"type": "telegram"}),
    envelope("e1", "message.received", "c1", "2026-11-24T09:00:00Z",
             channel={"type": "whatsapp"}),
    "not json at all",
    NO_CHANNEL,
    NO_OFFSET,
    envelope("x1", "conversation.open", "c1", "2026-11-24T13:00:00Z", ws="ws2",
             actor={"type": "robot"}),
]


class OpsCli(Cli):
    """:class:`Cli` that can also change a stored dead letter (SQLite)."""

    def fix_raw(self, entry_id: str, raw: str) -> None:
        """Stand-in for a parser fix: the stored line becomes one today's parser accepts."""
        with sqlite3.connect(self.db) as conn:
            conn.execute("UPDATE dead_letters SET raw = ? WHERE id = ?", (raw, int(entry_id)))


def imported(cli: OpsCli) -> OpsCli:
    summary = cli.json("import", str(cli.write("events.jsonl", LINES)))
    assert summary["invalid"] == 4 and summary["duplicate"] == 1
    return cli


@pytest.fixture
def ops(tmp_path: Path) -> OpsCli:
    return imported(OpsCli(tmp_path))


def dead_letters(cli: Cli, *args: str) -> list[dict[str, Any]]:
    rows = cli.json("dead-letters", "--format", "json", *args)
    assert isinstance(rows, list)
    return rows


def by_event(rows: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    return {row["event_id"]: row for row in rows}


# ------------------------------------------------------------------------- outcome
def test_outcome_of_an_accepted_event_lists_the_domain_events_it_caused(ops: Cli) -> None:
    report = ops.json("outcome", "--workspace", "ws1", "e1", "--format", "json")
    assert report["outcome"] == "accepted" and report["reason"] is None
    assert (report["contact_id"], report["event_type"]) == ("c1", "message.received")
    assert report["occurred_at"] == "2026-11-24T09:00:00Z"
    assert [e["event_type"] for e in report["domain_events"]] == [
        "ConversationOpened", "MessageReceived"]
    assert {e["source_event_id"] for e in report["domain_events"]} == {"e1"}
    assert report["dead_letters"] == []
    table = ops.ok("outcome", "--workspace", "ws1", "e1")
    assert "accepted" in table and "ConversationOpened" in table


def test_outcome_follows_merges_both_ways(ops: Cli) -> None:
    merge = ops.json("outcome", "--workspace", "ws1", "m1", "--format", "json")
    assert merge["outcome"] == "accepted"
    caused = {(e["event_type"], e["contact_id"]) for e in merge["domain_events"]}
    assert caused == {("ConversationClosed", "c2"), ("ContactMerged", "c2"),
                      ("ContactAbsorbed", "c1")}
    closed = next(e for e in merge["domain_events"] if e["event_type"] == "ConversationClosed")
    assert closed["closed_by"] == "merge"
    after = ops.json("outcome", "--workspace", "ws1", "e5", "--format", "json")
    assert {(e["event_type"], e["contact_id"]) for e in after["domain_events"]} == {
        ("ConversationOpened", "c1"), ("MessageReceived", "c1")}


def test_outcome_of_rejected_and_invalid_events_names_the_reason(ops: Cli) -> None:
    rejected = ops.json("outcome", "--workspace", "ws1", "e3", "--format", "json")
    assert (rejected["outcome"], rejected["reason"]) == ("rejected", "no_open_conversation")
    assert rejected["domain_events"] == []
    invalid = ops.json("outcome", "--workspace", "ws1", "e-tz", "--format", "json")
    assert invalid["outcome"] == "invalid"
    assert "offset" in invalid["reason"]
    assert [d["source"] for d in invalid["dead_letters"]] == ["file"]
    assert invalid["dead_letters"][0]["raw"] == NO_OFFSET
    assert "reason" in ops.ok("outcome", "--workspace", "ws1", "e-tz")


def test_outcome_of_an_unknown_event_is_one_line_exit_1(ops: Cli) -> None:
    done = ops.run("outcome", "--workspace", "ws1", "nope")
    assert_one_line_error(done, 1)
    assert "nope" in done.stderr
    # the event of another workspace is not this workspace's
    assert_one_line_error(ops.run("outcome", "--workspace", "ws2", "e1"), 1)


def test_outcome_needs_workspace_and_event_id(ops: Cli) -> None:
    assert_one_line_error(ops.run("outcome", "e1"), 2)
    assert_one_line_error(ops.run("outcome", "--workspace", "ws1"), 2)


# --------------------------------------------------------------------- dead-letters
def test_dead_letters_lists_every_invalid_input_with_reason_time_and_source(ops: Cli) -> None:
    rows = dead_letters(ops)
    assert len(rows) == 4
    unparsed = by_event(rows)[None]
    assert unparsed["workspace_id"] is None and unparsed["raw"] == "not json at all"
    assert unparsed["reason"].startswith("malformed JSON")
    for row in rows:
        assert row["source"] == "file" and row["received_at"].endswith("Z")
        assert row["partition"] is None and row["offset"] is None
        assert row["retry_outcome"] is None
    assert by_event(rows)["x1"]["workspace_id"] == "ws2"


def test_dead_letters_filters(ops: Cli) -> None:
    ws1 = dead_letters(ops, "--workspace", "ws1")
    assert sorted(by_event(ws1)) == ["e-fix", "e-tz"]  # the unparsable line names none
    assert dead_letters(ops, "--source", "file", "--workspace", "ws2")[0]["event_id"] == "x1"
    assert dead_letters(ops, "--source", "http") == []
    assert dead_letters(ops, "--since", "2999-01-01") == []
    assert len(dead_letters(ops, "--since", "2000-01-01T00:00:00+02:00")) == 4
    assert_one_line_error(ops.run("dead-letters", "--since", "yesterday"), 2)
    assert_one_line_error(ops.run("dead-letters", "--source", "ftp"), 2)


def test_dead_letters_csv_and_table(ops: Cli) -> None:
    rows = list(csv.DictReader(io.StringIO(ops.ok("dead-letters", "--format", "csv"))))
    assert len(rows) == 4
    assert list(rows[0])[:6] == ["id", "received_at", "source", "workspace_id", "event_id",
                                 "reason"]
    assert {r["raw"] for r in rows} >= {"not json at all", NO_CHANNEL}
    text = ops.ok("dead-letters", "--workspace", "ws2")
    assert "x1" in text and "REASON" in text and "e-tz" not in text
    assert ops.ok("dead-letters", "--source", "http").strip() == "(no dead letters)"


# --------------------------------------------------------------------------- retry
def test_retry_dry_run_changes_nothing(ops: Cli) -> None:
    before = dead_letters(ops)
    report = ops.json("dead-letters", "retry", "--all", "--dry-run", "--format", "json")
    assert report["dry_run"] is True
    assert report["summary"] == {"invalid": 4}
    assert dead_letters(ops) == before
    assert ops.json("metrics", "--workspace", "ws1", "--format", "json")["total"]["opened"] == 3


def test_retry_resubmits_through_the_pipeline_and_records_the_new_outcome(ops: OpsCli) -> None:
    ids = {row["event_id"]: row["id"] for row in dead_letters(ops)}
    # the gateway re-sent e-fix with its channel, and a parser fix makes both stored
    # lines valid: e-tz is new, e-fix a duplicate of the re-sent one
    fixed = json.dumps(json.loads(NO_CHANNEL) | {"channel": {"type": "sms"}})
    ops.json("import", "-", stdin=fixed + "\n")
    ops.fix_raw(ids["e-tz"], NO_OFFSET.replace("12:00:00", "12:00:00Z"))
    ops.fix_raw(ids["e-fix"], fixed)

    report = ops.json("dead-letters", "retry", "--id", ids["e-tz"], ids["e-fix"], "--format",
                      "json")
    outcomes = {r["id"]: r["outcome"] for r in report["results"]}
    assert outcomes == {ids["e-tz"]: "accepted", ids["e-fix"]: "duplicate"}
    rows = by_event(dead_letters(ops))
    assert rows["e-tz"]["retry_outcome"] == "accepted" and rows["e-tz"]["retry_attempts"] == 1
    assert rows["e-fix"]["retry_outcome"] == "duplicate"
    assert rows[None]["retry_outcome"] is None
    # the retried event went the whole way: outcome log, events, read model
    assert ops.json("outcome", "--workspace", "ws1", "e-tz", "--format", "json")[
        "outcome"] == "accepted"
    convs = ops.json("conversations", "--workspace", "ws1", "--contact", "c8", "--format", "json")
    assert [c["channel"] for c in convs] == ["sms"]

    # --all takes the rest; resolved entries are skipped, never retried twice
    again = ops.json("dead-letters", "retry", "--all", "--format", "json")
    assert again["summary"] == {"invalid": 2}
    assert {r["id"] for r in again["results"]} == {ids[None], ids["x1"]}
    assert dead_letters(ops, "--workspace", "ws2")[0]["retry_attempts"] == 1
    named = ops.json("dead-letters", "retry", "--id", ids["e-tz"], "--format", "json")
    assert named["results"] == [{"id": ids["e-tz"], "outcome": "accepted", "reason": None,
                                 "skipped": True}]
    assert "invalid" in ops.ok("dead-letters", "retry", "--all")
    assert dead_letters(ops, "--workspace", "ws2")[0]["retry_attempts"] == 2


def test_retry_usage_errors(ops: Cli) -> None:
    assert_one_line_error(ops.run("dead-letters", "retry"), 2)
    assert_one_line_error(ops.run("dead-letters", "retry", "--all", "--id", "1"), 2)
    done = ops.run("dead-letters", "retry", "--id", "999")
    assert_one_line_error(done, 1)
    assert "999" in done.stderr
    assert_one_line_error(ops.run("dead-letters", "retry", "--id", "dlq-0-1"), 1)


# ----------------------------------------------------------- never creates a store
@pytest.mark.parametrize("args", [("outcome", "--workspace", "ws1", "e1"),
                                  ("dead-letters",),
                                  ("dead-letters", "retry", "--all")])
def test_operator_commands_never_create_a_store(tmp_path: Path, args: tuple[str, ...]) -> None:
    cli = Cli(tmp_path)
    done = cli.run(*args)
    assert_one_line_error(done, 1)
    assert str(cli.db) in done.stderr
    assert not cli.db.exists()
    assert not (cli.folder / "bonychat.db").exists()
